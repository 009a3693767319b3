"""Bad local state is detected and explained, never ignored: a port held by
another program, a stale pid file, a half-finished download."""

import os
import socket
import subprocess
from pathlib import Path

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


def test_stale_pid_file_is_explained_and_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "run").mkdir()
    pid_file = tmp_path / "run/redis.pid"
    pid_file.write_text(f"{dead.pid}\n")
    result = _bash('echo "pid=[$(live_pid redis redis-server)]"', state=tmp_path)
    assert result.returncode == 0
    assert "pid=[]" in result.stdout
    assert "stale pid file" in result.stderr
    assert not pid_file.exists()


def test_pid_reused_by_another_program_is_not_taken_for_ours(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    pid_file = tmp_path / "run/kafka.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # alive, but pytest, not Kafka
    result = _bash('echo "pid=[$(live_pid kafka kafka.Kafka)]"', state=tmp_path)
    assert "pid=[]" in result.stdout
    assert "stale pid file" in result.stderr


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
