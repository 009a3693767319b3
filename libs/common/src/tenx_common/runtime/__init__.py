"""A service's processes: the app every service builds in one call (``app``,
``openapi``), its worker and relay processes (``worker``), the clients its
settings call for (``infra``, ``mail``), its command line (``cli``) and the
server (``server``).

Services import from here; the modules import one another directly."""

from tenx_common.runtime.app import create_service_app, handler_deps
from tenx_common.runtime.cli import run_service_cli, wiring_command
from tenx_common.runtime.infra import ServiceWiring, open_infra
from tenx_common.runtime.worker import Every, create_worker_app

__all__ = [
    "Every",
    "ServiceWiring",
    "create_service_app",
    "create_worker_app",
    "handler_deps",
    "open_infra",
    "run_service_cli",
    "wiring_command",
]
