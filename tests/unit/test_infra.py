"""What a bootstrap is told when it asks for a client its settings do not call for."""

import pytest

from tenx_common.runtime.infra import Infra, NotConfiguredError


def test_a_missing_client_names_the_settings_it_needs() -> None:
    infra = Infra(service="search-indexer")

    with pytest.raises(NotConfiguredError, match=r"search-indexer has no Redis client.*Redis"):
        _ = infra.redis
    with pytest.raises(NotConfiguredError, match="PostgresSettings and RedisSettings"):
        _ = infra.router
