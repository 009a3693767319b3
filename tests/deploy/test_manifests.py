"""Every rendered object is valid Kubernetes (strict: no unknown field) for the
pinned version, and holds the platform's policies: probes, requests and
limits, a non-root and read-only security context, pinned images, a
disruption budget and (for the HTTP services and the consumers) an autoscaler
within the topics' partitions, and a laptop-sized local platform."""

import re
import tomllib
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError

from tests.deploy.conftest import (
    LOCAL_OVERLAYS,
    ROOT,
    Object,
    containers,
    is_ours,
    named,
    of_kind,
    pod_specs,
    render,
    versions,
)
from tests.support import processes

# The operators' custom resources, production only (their CRDs are not in
# kubernetes-validate's schemas; their shape is checked below instead).
CUSTOM = {
    ("postgresql.cnpg.io/v1", "Cluster"): ["instances", "storage"],
    ("postgresql.cnpg.io/v1", "Database"): ["cluster", "name", "owner"],
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): ["schedule", "cluster"],
    ("postgresql.cnpg.io/v1", "Pooler"): ["cluster", "pgbouncer"],
    ("barmancloud.cnpg.io/v1", "ObjectStore"): ["configuration"],
    ("kafka.strimzi.io/v1beta2", "Kafka"): ["kafka"],
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): ["replicas", "roles", "storage"],
    ("elasticsearch.k8s.elastic.co/v1", "Elasticsearch"): ["version", "nodeSets"],
    ("opentelemetry.io/v1beta1", "OpenTelemetryCollector"): ["mode", "config"],
    ("external-secrets.io/v1", "ExternalSecret"): ["secretStoreRef", "target", "data"],
}
PROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_every_object_is_valid_for_the_pinned_kubernetes(objects: tuple[Object, ...]) -> None:
    version = versions()["K8S_SCHEMA_VERSION"]
    custom = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except SchemaNotFoundError:
            custom.append(obj)
    for obj in custom:
        required = CUSTOM.get((obj["apiVersion"], obj["kind"]))
        assert required is not None, f"unknown kind {obj['apiVersion']} {obj['kind']}"
        missing = [key for key in required if key not in obj["spec"]]
        assert not missing, f"{obj['kind']} {obj['metadata']['name']} lacks spec.{missing}"


def test_strict_validation_refuses_an_unknown_field() -> None:
    deployment: Any = named(render("kind"), "Deployment", "api")
    wrong = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, versions()["K8S_SCHEMA_VERSION"], strict=True)


def test_custom_resources_only_in_production() -> None:
    for overlay in LOCAL_OVERLAYS:
        kinds = {(o["apiVersion"], o["kind"]) for o in render(overlay)}
        assert not kinds & set(CUSTOM), overlay
    assert {(o["apiVersion"], o["kind"]) for o in render("production")} >= set(CUSTOM)


def test_every_long_running_container_has_its_three_probes(objects: tuple[Object, ...]) -> None:
    for workload in of_kind(objects, "Deployment", "StatefulSet"):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container, (workload["metadata"]["name"], probe)


def test_every_process_of_ours_is_probed_on_healthz_and_readyz(
    objects: tuple[Object, ...],
) -> None:
    checked = 0
    for workload in of_kind(objects, "Deployment"):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            if not is_ours(container):
                continue
            paths = {
                probe: container[probe]["httpGet"]["path"]
                for probe in ("startupProbe", "livenessProbe", "readinessProbe")
            }
            assert paths == {
                "startupProbe": "/healthz",
                "livenessProbe": "/healthz",
                "readinessProbe": "/readyz",
            }, workload["metadata"]["name"]
            checked += 1
    assert checked == 11  # 3 servers, 4 consumers, 4 relays


def test_every_container_has_requests_limits_and_a_locked_down_security_context(
    objects: tuple[Object, ...],
) -> None:
    for workload, pod in pod_specs(objects):
        where = workload["metadata"]["name"]
        pod_security = pod.get("securityContext", {})
        assert pod_security.get("runAsNonRoot") is True, where
        assert pod_security.get("runAsUser", 0) != 0, where
        assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert pod.get("automountServiceAccountToken") is False, where
        writable_root = "tenx.dev/writable-root" in workload["spec"]["template"]["metadata"].get(
            "annotations", {}
        )
        for container in containers(pod):
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert set(resources.get(bound, {})) >= {"cpu", "memory"}, (where, bound)
            security = container.get("securityContext", {})
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert "privileged" not in security, where
            assert security.get("runAsUser", 1) != 0, where
            # Read-only, unless the pod says why its image must write (ours never do).
            read_only = security.get("readOnlyRootFilesystem") is True
            assert read_only or (writable_root and not is_ours(container)), where


def test_every_image_is_pinned(objects: tuple[Object, ...]) -> None:
    for workload, pod in pod_specs(objects):
        for container in containers(pod):
            image = container["image"]
            tag = "digest" if "@" in image else image.rpartition(":")[2]
            where = (workload["metadata"]["name"], image)
            assert ":" in image or "@" in image, where
            assert tag != "latest", where
            assert "/" not in tag, where
            if is_ours(container):
                assert tag == PROJECT_VERSION, image


def test_the_infrastructure_runs_the_versions_of_the_local_stack() -> None:
    pinned = versions()
    images = {
        container["image"].rpartition(":")[0]: container["image"].rpartition(":")[2]
        for _, pod in pod_specs(render("kind"))
        for container in containers(pod)
    }
    assert images["apache/kafka"] == pinned["KAFKA_VERSION"]
    assert images["elasticsearch"] == pinned["ELASTICSEARCH_VERSION"]
    assert images["axllent/mailpit"] == pinned["MAILPIT_VERSION"]
    assert images["postgres"].split(".")[0] == pinned["POSTGRES_MAJOR"]
    production = render("production")
    assert named(production, "Kafka", "tenx")["spec"]["kafka"]["version"] == pinned["KAFKA_VERSION"]
    es = named(production, "Elasticsearch", "tenx")["spec"]["version"]
    assert es == pinned["ELASTICSEARCH_VERSION"]
    cnpg = named(production, "Cluster", "tenx-pg")["spec"]["imageName"]
    assert cnpg.rpartition(":")[2].split(".")[0] == pinned["POSTGRES_MAJOR"]


def test_every_process_of_the_local_stack_is_a_deployment(objects: tuple[Object, ...]) -> None:
    """The local stack's Python processes (deploy/local/processes.conf), each
    its own Deployment: the servers (api's two instances are replicas) and the
    consumers; and each service's relay, which locally runs in its worker."""
    runs = {p.name: p.runs for p in processes.programs() if p.runs is not None}
    local = {re.sub(r"-\d+$", "", name) for name in runs}
    local |= {
        f"{package.removeprefix('tenx_').replace('_', '-')}-relay" for package, _ in runs.values()
    }
    deployments = {
        d["metadata"]["name"]
        for d in of_kind(objects, "Deployment")
        if d["metadata"]["labels"].get("tenx.dev/runtime") == "python"
    }
    assert deployments == local


def _replicas(objects: tuple[Object, ...], workload: Object) -> int:
    hpas = [
        h
        for h in of_kind(objects, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]
    ]
    if hpas:
        assert "replicas" not in workload["spec"], "an autoscaled Deployment leaves replicas alone"
        return int(hpas[0]["spec"]["minReplicas"])
    return int(workload["spec"].get("replicas", 1))


def _quantity(value: str | int) -> float:
    """CPU in cores, memory in MiB."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


@pytest.mark.parametrize("overlay_name", LOCAL_OVERLAYS)
def test_a_local_cluster_requests_at_most_4_gib_and_3_cpus(overlay_name: str) -> None:
    objects = render(overlay_name)
    cpu = memory = 0.0
    for workload in of_kind(objects, "Deployment", "StatefulSet"):
        count = _replicas(objects, workload)
        for container in containers(workload["spec"]["template"]["spec"]):
            requests = container["resources"]["requests"]
            cpu += count * _quantity(requests["cpu"])
            memory += count * _quantity(requests["memory"])
    assert memory <= 4096, f"{memory:.0f} MiB requested"
    assert cpu <= 3.0, f"{cpu:.2f} CPUs requested"


def test_every_deployment_has_a_disruption_budget(objects: tuple[Object, ...]) -> None:
    budgets = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for p in of_kind(objects, "PodDisruptionBudget")
    }
    ours = {
        d["metadata"]["name"]
        for d in of_kind(objects, "Deployment")
        if d["metadata"]["labels"].get("tenx.dev/runtime") == "python"
    }
    assert ours <= budgets


def test_servers_and_consumers_autoscale_within_the_partitions(
    objects: tuple[Object, ...],
) -> None:
    scaled = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]
        for h in of_kind(objects, "HorizontalPodAutoscaler")
    }
    components = {
        d["metadata"]["name"]: d["metadata"]["labels"]["app.kubernetes.io/component"]
        for d in of_kind(objects, "Deployment")
        if d["metadata"]["labels"].get("tenx.dev/runtime") == "python"
    }
    topics = next(
        c["data"]
        for c in of_kind(objects, "ConfigMap")
        if c["metadata"]["name"].startswith("topics-")
    )
    partitions = int(topics["TENX_TOPIC_PARTITIONS"])
    for name, component in components.items():
        if component in ("server", "consumer"):
            assert name in scaled, f"{name} has no HorizontalPodAutoscaler"
        if component == "consumer":
            # A consumer past the partitions would idle.
            assert scaled[name]["maxReplicas"] <= partitions, name
        if component == "relay":
            assert name not in scaled  # a relay is not throughput: a standby at most


def test_no_secret_value_is_committed_or_rendered_in_production() -> None:
    assert not of_kind(render("production"), "Secret")
    assert all(o["kind"] != "Secret" for o in render("production"))
    tracked = (
        __import__("subprocess")
        .run(
            ["git", "ls-files", "deploy/k8s"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        .stdout.split()
    )
    assert not [path for path in tracked if "/secrets/" in path and path.endswith(".env")]


def test_every_config_map_and_secret_a_pod_names_is_made(objects: tuple[Object, ...]) -> None:
    made = {(o["kind"], o["metadata"]["name"]) for o in objects}
    made |= {("Secret", o["spec"]["target"]["name"]) for o in of_kind(objects, "ExternalSecret")}
    for workload, pod in pod_specs(objects):
        named_refs = [
            ("ConfigMap", v["configMap"]["name"])
            for v in pod.get("volumes", [])
            if "configMap" in v
        ]
        for container in containers(pod):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    named_refs.append(("ConfigMap", source["configMapRef"]["name"]))
                if "secretRef" in source:
                    named_refs.append(("Secret", source["secretRef"]["name"]))
            for item in container.get("env", []):
                if "secretKeyRef" in item.get("valueFrom", {}):
                    named_refs.append(("Secret", item["valueFrom"]["secretKeyRef"]["name"]))
        missing = [ref for ref in named_refs if ref not in made]
        assert not missing, (workload["metadata"]["name"], missing)
