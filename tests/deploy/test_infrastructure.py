"""The in-cluster infrastructure's own scripts and configuration, run here on
the same servers the local stack installs: PostgreSQL's init script and the
replica's base backup (from the rendered manifests), and Kafka's KRaft
storage formatted with the broker's configuration and cluster id."""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import K8S, containers, named, render, versions

PG_BIN = Path(f"/usr/lib/postgresql/{versions()['POSTGRES_MAJOR']}/bin")
PORT = 55432


def as_postgres(
    *command: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    extra = [f"{key}={value}" for key, value in (env or {}).items()]
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", "env", *extra, *command],
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def primary() -> Iterator[Path]:
    """A PostgreSQL made as the image's entrypoint makes it, then given the
    component's init script (with the secrets' variables)."""
    assert os.geteuid() == 0, "runs PostgreSQL as its own user"
    # Under /tmp itself: pytest's own folders are closed to other users.
    tmp_path = Path(tempfile.mkdtemp(prefix="tenx-k8s-pg-"))
    shutil.chown(tmp_path, "postgres")
    data = tmp_path / "primary"
    made = as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust")
    assert made.returncode == 0, made.stderr
    # Connections over 127.0.0.1 stand in for other pods': initdb's trust for
    # loopback goes, and the image's entrypoint's one rule for the network is
    # added (the init script adds the replication rule).
    hba = data / "pg_hba.conf"
    local = [line for line in hba.read_text().splitlines() if line.startswith("local")]
    hba.write_text("\n".join([*local, "host all all all scram-sha-256", ""]))
    options = f"-c listen_addresses=127.0.0.1 -c port={PORT} -c unix_socket_directories={tmp_path}"
    started = as_postgres(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-w",
        "-l",
        str(tmp_path / "log"),
        "start",
    )
    assert started.returncode == 0, started.stderr
    try:
        script = K8S / "components" / "in-cluster" / "config" / "10-tenx.sh"
        copy = tmp_path / "10-tenx.sh"
        shutil.copy(script, copy)
        init = as_postgres(
            "bash",
            str(copy),
            env={"PATH": f"{PG_BIN}:/usr/bin:/bin", "PGDATA": str(data), "PGHOST": str(tmp_path),
                 "PGPORT": str(PORT)} | PASSWORDS,
        )  # fmt: skip
        assert init.returncode == 0, init.stderr
        assert as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "reload").returncode == 0
        yield tmp_path
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(tmp_path, ignore_errors=True)


PASSWORDS = {
    "PG_REPLICATOR_PASSWORD": "replicator-pw",
    "PG_PASSWORD_TENX_API": "api-pw",
    "PG_PASSWORD_TENX_AUTH": "auth-pw",
    "PG_PASSWORD_TENX_NOTIFY": "notify-pw",
    "PG_PASSWORD_TENX_SEARCH_INDEXER": "search-pw",
}


def psql(user: str, password: str, database: str, sql: str) -> subprocess.CompletedProcess[str]:
    return as_postgres(
        str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(PORT), "-U", user, "-d", database,
        "-qAtc", sql, env={"PGPASSWORD": password},
    )  # fmt: skip


def test_each_service_logs_in_to_its_own_database_only(primary: Path) -> None:
    for service in ("api", "auth", "notify", "search_indexer"):
        password = PASSWORDS[f"PG_PASSWORD_TENX_{service.upper()}"]
        own = psql(f"tenx_{service}", password, f"tenx_{service}", "SELECT current_user")
        assert own.stdout.strip() == f"tenx_{service}", own.stderr
    other = psql("tenx_api", "api-pw", "tenx_auth", "SELECT 1")
    assert other.returncode != 0
    assert "permission denied" in other.stderr
    wrong = psql("tenx_api", "not-the-password", "tenx_api", "SELECT 1")
    assert "password authentication failed" in wrong.stderr


def test_the_replica_init_container_copies_the_primary_once(primary: Path) -> None:
    replica = named(render("kind"), "StatefulSet", "postgres-replica")
    [init] = [
        c for c in containers(replica["spec"]["template"]["spec"]) if c["name"] == "basebackup"
    ]
    script = init["command"][-1].replace("postgres-primary", "127.0.0.1")
    env = {"PATH": f"{PG_BIN}:/usr/bin:/bin", "PGPORT": str(PORT),
           "PG_REPLICATOR_PASSWORD": PASSWORDS["PG_REPLICATOR_PASSWORD"]}  # fmt: skip
    for attempt in ("first", "slot-left-by-a-lost-volume"):
        data = primary / f"replica-{attempt}" / "pgdata"
        data.parent.mkdir()
        shutil.chown(data.parent, "postgres")
        done = as_postgres("bash", "-ec", script, env=env | {"PGDATA": str(data)})
        assert done.returncode == 0, done.stderr
        assert (data / "standby.signal").exists()
        auto = (data / "postgresql.auto.conf").read_text()
        assert "primary_slot_name = 'tenx_replica_1'" in auto
    again = as_postgres("bash", "-ec", script, env=env | {"PGDATA": str(data)})
    assert again.returncode == 0  # data there: nothing to do
    slots = psql("replicator", PASSWORDS["PG_REPLICATOR_PASSWORD"], "postgres",
                 "SELECT slot_name FROM pg_replication_slots")  # fmt: skip
    assert slots.stdout.split() == ["tenx_replica_1"], slots.stderr  # one slot, reused


def test_kafka_formats_its_storage_with_the_brokers_configuration(tmp_path: Path) -> None:
    [broker] = named(render("kind"), "StatefulSet", "kafka")["spec"]["template"]["spec"][
        "containers"
    ]
    env = {item["name"]: item["value"] for item in broker["env"]}
    properties = (K8S / "components" / "in-cluster" / "config" / "server.properties").read_text()
    config = tmp_path / "server.properties"
    config.write_text(properties.replace("/var/lib/kafka/data", str(tmp_path / "data")))
    libs = (
        Path(os.environ.get("TENX_CACHE", "/var/cache/tenx"))
        / f"kafka-{versions()['KAFKA_VERSION']}"
        / "libs"
    )
    formatted = subprocess.run(
        ["java", "-Xmx256m", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
         "-t", env["KAFKA_CLUSTER_ID"], "-c", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    meta = (tmp_path / "data" / "meta.properties").read_text()
    assert f"cluster.id={env['KAFKA_CLUSTER_ID']}" in meta
    assert "node.id=1" in meta
