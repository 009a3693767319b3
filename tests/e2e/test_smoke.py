"""The smoke test docs/deploy.md runs against a cluster passes against the
local stack, and fails loudly when a step fails."""

import os
import subprocess
import sys

from tenx_auth.settings import Settings as AuthSettings
from tests.support.stack import EDGE


def smoke(password: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"TENX_SMOKE_ADMIN_PASSWORD": password, "TENX_SMOKE_TIMEOUT_S": "60"}
    return subprocess.run(
        [sys.executable, "-m", "tenx_tools.smoke", EDGE],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_smoke_test_passes_against_the_running_platform() -> None:
    settings = AuthSettings()
    assert settings.admin_password is not None
    done = smoke(settings.admin_password.get_secret_value())
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 7
    assert lines[-1] == f"smoke: passed against {EDGE}"


def test_the_smoke_test_fails_on_the_first_failing_step() -> None:
    done = smoke("not the admin's password")
    assert done.returncode == 1
    assert "smoke: FAILED: POST /v1/auth/token: 401" in done.stderr
    assert "passed" not in done.stdout
