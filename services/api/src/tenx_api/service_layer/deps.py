"""What the api's handlers need; built once by the bootstrap."""

from collections.abc import Callable
from dataclasses import dataclass

from tenx_api.settings import Settings
from tenx_common.cache import Cache
from tenx_common.session_router import SessionRouter
from tenx_common.uow import UnitOfWork


@dataclass
class ApiDeps:
    settings: Settings
    uow: Callable[[], UnitOfWork]
    router: SessionRouter
    cache: Cache
