"""``make fuzz``: schemathesis against the OpenAPI documents of api, auth and
notify, through the edge, signed in as the admin (who may call every route),
with every check and the stateful phase (its links follow the documents'
ids from one response into the next request). The settings that are the
project's choices live in schemathesis.toml; the run fails on any failure.

    python -m tests.tools.fuzz [EXAMPLES]     (default 25 per operation; CI runs 3)

Reports (JUnit) go to .state/fuzz/<service>.xml.
"""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.stack import EDGE, ROOT, admin

SERVICES = ("api", "auth", "notify")


def admin_token() -> str:
    async def log_in_as_admin() -> str:
        async with httpx.AsyncClient(base_url=EDGE, timeout=10) as edge:
            return (await admin(edge))["Authorization"].removeprefix("Bearer ")

    return asyncio.run(log_in_as_admin())


def fuzz(service: str, examples: int) -> int:
    reports = ROOT / ".state" / "fuzz"
    reports.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "st"), "run", f"{EDGE}/_/{service}/openapi.json",
        "--url", EDGE, "--checks", "all", "--max-examples", str(examples), "--workers", "1",
        "--generation-database", "none", "--no-color",
        "--report", "junit", "--report-junit-path", str(reports / f"{service}.xml"),
    ]  # fmt: skip
    # A fresh token each time: a long run outlives one (15 min).
    env = os.environ | {"TENX_FUZZ_TOKEN": admin_token()}
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, check=False)
    print(
        f"fuzz: {service}: exit {done.returncode} in {time.monotonic() - started:.0f} s", flush=True
    )
    return done.returncode


def main() -> None:
    examples = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    failed = [service for service in SERVICES if fuzz(service, examples) != 0]
    if failed:
        raise SystemExit(f"fuzz: failures in {', '.join(failed)} (reports in .state/fuzz)")
    print(f"fuzz: {', '.join(SERVICES)} passed every check ({examples} examples per operation)")


if __name__ == "__main__":
    main()
