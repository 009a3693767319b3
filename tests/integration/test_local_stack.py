"""The local stack's own behaviour: bad local state is detected and explained,
never ignored (a port held by another program, a half-finished download);
every process runs under its supervisor, which starts one that died again."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support import processes

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "deploy/local"
REAL_CACHE = Path(os.environ.get("TENX_CACHE", "/var/cache/tenx"))


def _bash(
    script: str, *, state: Path, cache: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TENX_STATE": str(state), "TENX_CACHE": str(cache or REAL_CACHE)}
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {LOCAL}/lib.sh; {script}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_port_taken_by_another_program_is_refused_with_its_name(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _bash(f"require_free_port redis {port}; echo started", state=tmp_path)
    assert result.returncode == 1
    assert "started" not in result.stdout
    assert f"port {port} is taken by another program" in result.stderr
    assert f"pid={os.getpid()}" in result.stderr  # the holder is named


def _stack(*args: str) -> str:
    return subprocess.run(
        [str(LOCAL / "stack"), *args], capture_output=True, text=True, check=True, timeout=300
    ).stdout


def _status_of(name: str) -> list[str]:
    return next(line.split() for line in _stack("status").splitlines() if line.split()[0] == name)


def test_a_killed_process_is_started_again_by_the_supervisor_and_counted() -> None:
    name = "auth-worker"
    before = int(_status_of(name)[_status_of(name).index("restarts") + 1])
    pid = int(_stack("pid", name))
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    _stack("wait", name, "60")  # nobody but the supervisor starts it
    assert time.monotonic() - started < 60
    assert int(_stack("pid", name)) != pid
    status = _status_of(name)
    assert status[1] == "RUNNING"
    assert int(status[status.index("restarts") + 1]) == before + 1


def test_a_stopped_component_stays_stopped_until_started() -> None:
    name = "mailpit"
    _stack("stop", name)
    try:
        assert _status_of(name)[1] == "STOPPED"
        time.sleep(2)  # the supervisor leaves a stopped program alone
        assert _status_of(name)[1] == "STOPPED"
        assert subprocess.run([str(LOCAL / "stack"), "pid", name], capture_output=True).returncode
    finally:
        _stack("start", name)
    assert _status_of(name)[1] == "RUNNING"


def test_an_unknown_component_is_refused_with_the_list() -> None:
    stack = str(LOCAL / "stack")
    result = subprocess.run([stack, "stop", "nosuch"], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert f"one of: {' '.join(processes.names())} postgres-primary" in result.stderr


def test_half_finished_download_is_detected_and_redone(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (REAL_CACHE / "m2").mkdir(parents=True, exist_ok=True)
    (cache / "m2").symlink_to(REAL_CACHE / "m2")  # the jars are downloaded once at most
    version = next(
        line.split("=")[1].split()[0]
        for line in (LOCAL / "versions.env").read_text().splitlines()
        if line.startswith("KAFKA_VERSION=")
    )
    libs = cache / f"kafka-{version}/libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-half-written.jar").write_bytes(b"PK\x03")  # no .complete marker
    result = _bash(f"source {LOCAL}/infra.sh; install_kafka", state=tmp_path / "state", cache=cache)
    assert result.returncode == 0, result.stderr
    assert "half-finished download" in result.stderr
    assert not (libs / "kafka_2.13-half-written.jar").exists()
    assert (libs / ".complete").exists()
    assert (libs / f"kafka_2.13-{version}.jar").exists()
