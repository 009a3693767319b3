"""The NetworkPolicies, evaluated as Kubernetes does (a flow needs an egress
rule at its source and an ingress rule at its destination, wherever a policy
selects the pod): every flow the platform needs is allowed, and the others
sampled here are denied."""

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.deploy.conftest import Object, of_kind, pod_specs, render

PYTHON = [
    "api", "api-worker", "api-relay", "auth", "auth-worker", "auth-relay", "notify",
    "notify-worker", "notify-relay", "search-indexer", "search-indexer-relay",
]  # fmt: skip
SERVERS_AND_CONSUMERS = [name for name in PYTHON if not name.endswith("-relay")]
USES_REDIS = ["api", "api-worker", "auth", "auth-worker", "notify", "notify-worker", "seed"]
INTERNET = "203.0.113.10"  # a public address (TEST-NET-3)
PRIVATE = "10.1.2.3"


@dataclass(frozen=True)
class Peer:
    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    ip: str = ""  # an address outside the cluster

    def __hash__(self) -> int:
        return hash((self.namespace, tuple(sorted(self.labels.items())), self.ip))


INGRESS_CONTROLLER = Peer("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS = Peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
KUBE_DNS = Peer("kube-system", {"k8s-app": "kube-dns"})


def matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def peer_matches(rule_peer: dict[str, Any], policy_namespace: str, peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        if not peer.ip:
            return False
        address = ipaddress.ip_address(peer.ip)
        block = rule_peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if peer.ip:
        return False
    if "namespaceSelector" in rule_peer:
        namespace_labels = {"kubernetes.io/metadata.name": peer.namespace}
        if not matches(rule_peer["namespaceSelector"], namespace_labels):
            return False
    elif peer.namespace != policy_namespace:
        return False
    return matches(rule_peer.get("podSelector"), peer.labels)


def port_matches(rule: dict[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(
        p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports
    )


def allows(
    policies: list[Object], pod: Peer, direction: str, other: Peer, port: int, protocol: str
) -> bool:
    """Whether the policies let ``pod`` send (Egress) to, or receive (Ingress)
    from, ``other`` on ``port``."""
    if pod.ip:
        return True  # outside the cluster: no policy applies
    section = "egress" if direction == "Egress" else "ingress"
    peers_key = "to" if direction == "Egress" else "from"
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and matches(p["spec"]["podSelector"], pod.labels)
        and direction in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True
    return any(
        port_matches(rule, port, protocol)
        and (
            not rule.get(peers_key)
            or any(
                peer_matches(peer, p["metadata"]["namespace"], other) for peer in rule[peers_key]
            )
        )
        for p in selecting
        for rule in p["spec"].get(section, [])
    )


def flow(
    policies: list[Object], source: Peer, target: Peer, port: int, protocol: str = "TCP"
) -> bool:
    return allows(policies, source, "Egress", target, port, protocol) and allows(
        policies, target, "Ingress", source, port, protocol
    )


def platform(overlay: str) -> tuple[list[Object], dict[str, Peer]]:
    objects = render(overlay)
    pods = {
        workload["metadata"]["name"]: Peer(
            workload["metadata"]["namespace"], workload["spec"]["template"]["metadata"]["labels"]
        )
        for workload, _ in pod_specs(objects)
    }
    return of_kind(objects, "NetworkPolicy"), pods


def needed_in_a_local_cluster() -> list[tuple[str, str, int]]:
    needs = [("ingress-controller", name, 8000) for name in ("api", "auth", "notify")]
    needs += [(name, "auth", 8000) for name in ("api", "api-worker", "notify", "notify-worker")]
    needs += [("search-indexer", "api", 8000)]
    needs += [("prometheus", name, 8000) for name in PYTHON]
    needs += [(name, "postgres-primary", 5432) for name in [*PYTHON, "migrations", "seed"]]
    needs += [("postgres-replica", "postgres-primary", 5432)]
    needs += [(name, "postgres-replica", 5432) for name in SERVERS_AND_CONSUMERS]
    needs += [(name, "redis", 6379) for name in USES_REDIS]
    needs += [(name, "kafka", 9092) for name in [*PYTHON, "topics", "seed"]]
    needs += [(name, "elasticsearch", 9200) for name in ("api", "api-worker", "search-indexer")]
    needs += [(name, "jaeger", 4318) for name in [*PYTHON, "migrations", "seed", "topics"]]
    needs += [("notify-worker", "mailpit", 1025), ("notify-worker", "internet", 443)]
    return needs


DENIED_IN_A_LOCAL_CLUSTER = [
    ("ingress-controller", "postgres-primary", 5432),
    ("ingress-controller", "api-worker", 8000),
    ("ingress-controller", "jaeger", 16686),
    ("ingress-controller", "search-indexer", 8000),
    ("api", "mailpit", 1025),
    ("api", "internet", 443),
    ("api-relay", "elasticsearch", 9200),
    ("auth", "elasticsearch", 9200),
    ("search-indexer-relay", "redis", 6379),
    ("topics", "postgres-primary", 5432),
    ("notify-worker", "private", 443),
    ("notify", "api", 8000),
    ("prometheus", "postgres-primary", 5432),
]


def resolve(pods: dict[str, Peer], name: str) -> Peer:
    extra = {
        "ingress-controller": INGRESS_CONTROLLER,
        "prometheus": PROMETHEUS,
        "internet": Peer(ip=INTERNET),
        "private": Peer(ip=PRIVATE),
    }
    return extra.get(name) or pods[name]


@pytest.mark.parametrize("overlay_name", ["kind", "minikube"])
def test_a_local_cluster_allows_every_flow_the_platform_needs(overlay_name: str) -> None:
    policies, pods = platform(overlay_name)
    refused = [
        (source, target, port)
        for source, target, port in needed_in_a_local_cluster()
        if not flow(policies, resolve(pods, source), resolve(pods, target), port)
    ]
    assert not refused
    for name, pod in pods.items():
        assert flow(policies, pod, KUBE_DNS, 53, "UDP"), f"{name} cannot resolve names"


@pytest.mark.parametrize("overlay_name", ["kind", "minikube"])
def test_a_local_cluster_denies_the_other_flows(overlay_name: str) -> None:
    policies, pods = platform(overlay_name)
    allowed = [
        (source, target, port)
        for source, target, port in DENIED_IN_A_LOCAL_CLUSTER
        if flow(policies, resolve(pods, source), resolve(pods, target), port)
    ]
    assert not allowed


def test_production_reaches_its_data_and_managed_services_only() -> None:
    policies, pods = platform("production")
    postgres = Peer("tenx-data", {"cnpg.io/cluster": "tenx-pg"})
    kafka = Peer("tenx-data", {"strimzi.io/cluster": "tenx"})
    elasticsearch = Peer("tenx-data", {"elasticsearch.k8s.elastic.co/cluster-name": "tenx"})
    collector = Peer("tenx-data", {"app.kubernetes.io/component": "opentelemetry-collector"})
    managed_redis = Peer(ip="10.20.0.5")
    for name in PYTHON:
        assert flow(policies, pods[name], postgres, 5432), name
        assert flow(policies, pods[name], kafka, 9092), name
        assert flow(policies, pods[name], collector, 4318), name
    assert flow(policies, pods["api"], elasticsearch, 9200)
    assert flow(policies, pods["search-indexer"], elasticsearch, 9200)
    assert flow(policies, pods["api"], managed_redis, 6379)
    assert flow(policies, pods["notify-worker"], Peer(ip=INTERNET), 443)
    assert flow(policies, INGRESS_CONTROLLER, pods["api"], 8000)
    assert not flow(policies, INGRESS_CONTROLLER, pods["api-worker"], 8000)
    assert not flow(policies, pods["api-relay"], managed_redis, 6379)
    assert not flow(policies, pods["api"], Peer(ip=INTERNET), 443)
    assert not flow(policies, pods["api"], postgres, 6379)


def test_production_reaches_postgres_through_its_pooler_and_backs_it_up() -> None:
    """The services reach the Pooler's pods, they reach the instances, and the
    instances reach the object store (on the internet, or a private endpoint)."""
    policies, pods = platform("production")
    [pooler] = of_kind(render("production"), "Pooler")
    cluster = pooler["spec"]["cluster"]["name"]
    bouncer = Peer(
        pooler["metadata"]["namespace"],
        {
            "cnpg.io/poolerName": pooler["metadata"]["name"],
            "cnpg.io/cluster": cluster,
            "cnpg.io/podRole": "pooler",
        },
    )
    instance = Peer("tenx-data", {"cnpg.io/cluster": cluster, "cnpg.io/podRole": "instance"})
    for name in PYTHON:
        assert flow(policies, pods[name], bouncer, 5432), name
    assert flow(policies, bouncer, instance, 5432)
    assert flow(policies, instance, instance, 5432)  # streaming replication
    assert flow(policies, instance, Peer(ip=INTERNET), 443)
    assert flow(policies, instance, Peer(ip=PRIVATE), 443)


def test_the_evaluator_denies_what_no_policy_allows() -> None:
    deny_all: Object = {
        "metadata": {"namespace": "tenx"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    a, b = Peer("tenx", {"app": "a"}), Peer("tenx", {"app": "b"})
    assert flow([], a, b, 80)
    assert not flow([deny_all], a, b, 80)
