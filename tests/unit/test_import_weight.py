"""A process loads the large client libraries only where it uses them: the
shared library's package re-exports must not pull Alembic (migrations run in
their own process) or Elasticsearch's client into every service."""

import subprocess
import sys

import pytest

# The services whose app or worker searches Elasticsearch.
SEARCHES = {"tenx_api", "tenx_search_indexer"}


def loaded(package: str) -> set[str]:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module('{package}.__main__')\n"
        f"importlib.import_module('{package}.app')\n"
        f"importlib.import_module('{package}.worker')\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("package", ["tenx_api", "tenx_auth", "tenx_notify", "tenx_search_indexer"])
def test_a_service_process_does_not_load_alembic_or_an_unused_client(package: str) -> None:
    modules = loaded(package)
    assert "tenx_common" in modules
    assert "alembic" not in modules
    assert ("elasticsearch" in modules) == (package in SEARCHES)
