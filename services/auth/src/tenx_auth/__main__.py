"""``python -m tenx_auth [serve | migrate | rotate-key | relay | worker | dead-letters]``."""

from tenx_auth.adapters.orm import dead_letters, outbox
from tenx_auth.app import create_app
from tenx_auth.bootstrap import AuthWiring, bootstrap
from tenx_auth.service_layer import handlers
from tenx_auth.settings import Settings
from tenx_auth.worker import create_worker
from tenx_common.runtime import run_service_cli, wiring_command


async def _rotate_key(wiring: AuthWiring) -> str:
    key = await handlers.rotate_signing_key(deps=wiring.deps)
    return f"new signing key {key.kid}, signing from {key.activates_at.isoformat()}"


def main() -> None:
    run_service_cli(
        package="tenx_auth",
        load_settings=Settings,
        create_app=create_app,
        outbox=outbox,
        worker=create_worker,
        dead_letters=dead_letters,
        commands={"rotate-key": wiring_command(bootstrap, _rotate_key)},
    )


if __name__ == "__main__":
    main()
