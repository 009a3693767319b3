"""``python -m tenx_api [serve | migrate | seed | relay | worker | dead-letters]``."""

from tenx_api.adapters.orm import dead_letters, outbox
from tenx_api.app import create_app
from tenx_api.bootstrap import ApiWiring, bootstrap
from tenx_api.settings import Settings
from tenx_api.worker import create_worker
from tenx_common.runtime import run_service_cli, wiring_command


async def _seed(wiring: ApiWiring) -> str:
    # Imported here: Faker costs every serving process 0.2 s of its restart.
    from tenx_api.service_layer.seed import seed_catalog

    return f"demo catalog: {await seed_catalog(deps=wiring.deps)} products added"


def main() -> None:
    run_service_cli(
        package="tenx_api",
        load_settings=Settings,
        create_app=create_app,
        outbox=outbox,
        worker=create_worker,
        dead_letters=dead_letters,
        commands={"seed": wiring_command(bootstrap, _seed)},
    )


if __name__ == "__main__":
    main()
