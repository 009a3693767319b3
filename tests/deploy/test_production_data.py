"""Production's PostgreSQL (CloudNativePG, overlays/production/data.yaml)
survives what the local stack's does: every WAL segment and a nightly base
backup reach object storage, kept for a recovery window; a commit waits for a
synchronous standby as it does locally; and PgBouncer pools the primary's
connections in transaction mode, while every process that LISTENs connects
to the primary directly."""

import re

from sqlalchemy.engine import make_url

from tests.deploy.conftest import Object, containers, is_ours, named, of_kind, pod_specs, render
from tests.deploy.test_settings import environment_of

CLUSTER = "tenx-pg"
NAMESPACE = "tenx-data"
BARMAN_CLOUD = "barman-cloud.cloudnative-pg.io"
# The local stack's Patroni cluster (deploy/local/postgres.sh): two replicas,
# synchronous_mode on and not strict, synchronous_node_count 1,
# synchronous_commit on, archive_timeout 60 s.
LOCAL_REPLICAS = 2
LOCAL_SYNCHRONOUS_STANDBYS = 1
LOCAL_ARCHIVE_TIMEOUT_S = 60
# The processes a transaction pooler would break: they LISTEN (relays, the
# workers' saga runner and delivery loop) or change the schema (the Jobs).
DIRECT_ONLY = {"consumer", "relay", "job"}


def cluster() -> Object:
    return named(render("production"), "Cluster", CLUSTER)


def seconds(value: str) -> int:
    """A PostgreSQL duration ("60", "60s", "1min") in seconds."""
    match = re.fullmatch(r"(\d+)\s*(s|min|h)?", value)
    assert match is not None, value
    return int(match.group(1)) * {None: 1, "s": 1, "min": 60, "h": 3600}[match.group(2)]


def wal_archiver(spec: Object) -> Object:
    archivers: list[Object] = [p for p in spec.get("plugins", []) if p.get("isWALArchiver")]
    [archiver] = archivers
    assert archiver.get("enabled", True) is True
    return archiver


def test_production_archives_every_wal_segment_to_object_storage_within_a_minute() -> None:
    objects = render("production")
    spec = cluster()["spec"]
    # The in-tree barmanObjectStore is deprecated and leaves CloudNativePG in 1.31.
    assert "barmanObjectStore" not in spec.get("backup", {})
    archiver = wal_archiver(spec)
    assert archiver["name"] == BARMAN_CLOUD
    store = named(objects, "ObjectStore", archiver["parameters"]["barmanObjectName"])
    assert store["metadata"]["namespace"] == NAMESPACE
    configuration = store["spec"]["configuration"]
    assert configuration["destinationPath"].startswith("s3://")
    assert configuration["wal"]["compression"]
    assert store["spec"]["retentionPolicy"] == "30d"
    timeout = spec["postgresql"]["parameters"]["archive_timeout"]
    assert seconds(timeout) == LOCAL_ARCHIVE_TIMEOUT_S


def test_production_takes_a_base_backup_every_night_and_one_at_once() -> None:
    objects = render("production")
    [scheduled] = [
        b for b in of_kind(objects, "ScheduledBackup") if b["spec"]["cluster"]["name"] == CLUSTER
    ]
    assert scheduled["metadata"]["namespace"] == NAMESPACE
    spec = scheduled["spec"]
    fields = spec["schedule"].split()
    assert len(fields) == 6, "CloudNativePG's schedules start with the seconds"
    assert all(re.fullmatch(r"\d+", field) for field in fields[:3]), spec["schedule"]
    assert fields[3:] == ["*", "*", "*"], "every day"
    assert spec["immediate"] is True  # WAL without a base backup restores nothing
    assert spec["backupOwnerReference"] in ("self", "cluster")
    assert spec["method"] == "plugin"
    assert spec["pluginConfiguration"]["name"] == wal_archiver(cluster()["spec"])["name"]


def test_the_backups_credentials_come_from_the_secret_store() -> None:
    objects = render("production")
    made = {
        (e["metadata"]["namespace"], e["spec"]["target"]["name"], item["secretKey"])
        for e in of_kind(objects, "ExternalSecret")
        for item in e["spec"]["data"]
    }
    for store in of_kind(objects, "ObjectStore"):
        credentials = store["spec"]["configuration"]["s3Credentials"]
        for ref in (credentials["accessKeyId"], credentials["secretAccessKey"]):
            assert (store["metadata"]["namespace"], ref["name"], ref["key"]) in made, ref


def test_production_replicates_synchronously_as_the_local_stack_does() -> None:
    spec = cluster()["spec"]
    assert spec["instances"] - 1 == LOCAL_REPLICAS
    # One standby named by priority, as Patroni does; the primary goes on alone
    # when none is left, as Patroni does without synchronous_mode_strict.
    assert spec["postgresql"]["synchronous"] == {
        "method": "first",
        "number": LOCAL_SYNCHRONOUS_STANDBYS,
        "dataDurability": "preferred",
    }
    # The deprecated form, which the operator refuses next to the new one.
    assert not {"minSyncReplicas", "maxSyncReplicas"} & set(spec)
    assert spec["postgresql"]["parameters"]["synchronous_commit"] == "on"


def test_production_pools_the_primarys_connections_in_transaction_mode() -> None:
    objects = render("production")
    [pooler] = [
        p
        for p in of_kind(objects, "Pooler")
        if p["spec"]["cluster"]["name"] == CLUSTER and p["spec"].get("type", "rw") == "rw"
    ]
    spec = pooler["spec"]
    assert pooler["metadata"]["namespace"] == NAMESPACE
    assert pooler["metadata"]["name"] != CLUSTER  # the operator refuses it
    assert spec["instances"] >= 2  # one survives a node
    assert spec["pgbouncer"]["poolMode"] == "transaction"
    parameters = spec["pgbouncer"]["parameters"]
    assert {"max_client_conn", "default_pool_size"} <= set(parameters)
    [bouncer] = [c for c in spec["template"]["spec"]["containers"] if c["name"] == "pgbouncer"]
    for bound in ("requests", "limits"):
        assert set(bouncer["resources"][bound]) >= {"cpu", "memory"}, bound
    # A pool per database and user, per instance: at most half of
    # max_connections, the rest is for the processes that connect directly.
    databases = [d for d in of_kind(objects, "Database") if d["spec"]["cluster"]["name"] == CLUSTER]
    pooled = int(parameters["default_pool_size"]) * len(databases) * spec["instances"]
    assert pooled < int(cluster()["spec"]["postgresql"]["parameters"]["max_connections"]) // 2


def test_every_process_that_listens_connects_to_the_primary_directly() -> None:
    """Transaction pooling breaks LISTEN and asyncpg's named prepared
    statements: only an HTTP server with its statement cache off may use the
    pooler; everything else connects to the -rw Service."""
    objects = render("production")
    poolers = {
        f"{p['metadata']['name']}.{p['metadata']['namespace']}" for p in of_kind(objects, "Pooler")
    }
    checked = 0
    for workload, pod in pod_specs(objects):
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        for container in filter(is_ours, containers(pod)):
            env = environment_of(objects, container)
            for name, url in env.items():
                if not name.endswith("_DATABASE_URL"):
                    continue
                host = ".".join(str(make_url(url).host).split(".")[:2])
                where = (workload["metadata"]["name"], container["name"], host)
                if host in poolers:
                    assert component not in DIRECT_ONLY, where
                    cache = name.removesuffix("URL") + "STATEMENT_CACHE_SIZE"
                    assert env.get(cache) == "0", where
                else:
                    assert host == f"{CLUSTER}-rw.{NAMESPACE}", where
                checked += 1
    assert checked >= 11  # every process of ours, and each migration
