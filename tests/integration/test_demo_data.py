"""`make up` seeds a demo catalog, once."""

import asyncio
import subprocess
import sys

from sqlalchemy import text

from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.db import primary_engine


async def test_the_demo_catalog_is_there_and_seeding_again_adds_nothing(
    api_settings: ApiSettings,
) -> None:
    engine = primary_engine(api_settings)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT count(*), count(DISTINCT category), min(price_cents) "
                        "FROM products WHERE sku LIKE 'DEMO-%'"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    products, categories, cheapest = row
    assert products >= 3000
    assert categories >= 12
    assert cheapest > 0
    again = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tenx_api", "seed"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "0 products added" in again.stdout
