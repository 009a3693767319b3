"""The local stack's process table (deploy/local/processes.conf): it parses,
names each program and port once, lists them in the order the stack starts
them, reads the same in bash as in Python, and what still restates it (README's
port table, the servers' own config files, the chaos drill's plan) agrees."""

import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.support import processes

LOCAL = processes.ROOT / "deploy" / "local"
# Besides the programs, `stack stop|start|wait NAME` takes these (stack: component).
ALIASES = ("postgres-primary", "postgres-replica", "postgres")


def test_the_table_parses_with_every_name_and_every_port_once() -> None:
    table = processes.programs()
    assert table
    repeated_names = [n for n, count in Counter(p.name for p in table).items() if count > 1]
    repeated_ports = [n for n, count in Counter(processes.ports()).items() if count > 1]
    assert repeated_names == []
    assert repeated_ports == []


def test_the_programs_are_in_the_order_the_stack_starts_their_kinds() -> None:
    kinds = [p.kind for p in processes.programs()]
    order = ["data", "infra", "service", "edge"]
    assert kinds == sorted(kinds, key=order.index)


def test_each_service_runs_a_package_and_answers_readyz_on_one_port() -> None:
    for service in processes.programs():
        if service.kind == "service":
            assert service.runs is not None
            assert service.runs[0].startswith("tenx_")
            assert (len(service.ports), service.ready) == (1, "http:/readyz"), service.name


def test_each_postgres_node_has_its_port_and_patronis() -> None:
    nodes = [p for p in processes.programs() if p.name.startswith("postgres-")]
    assert [n.name for n in nodes] == ["postgres-1", "postgres-2", "postgres-3"]
    assert all(len(n.ports) == 2 and n.ready == "patroni" for n in nodes)


def test_a_malformed_line_is_refused_with_its_number() -> None:
    good = "edge edge 8080 http:/healthz - the edge\n"
    assert processes.parse(good)[0].port == 8080
    for bad in (
        "edge edge 8080 http:/healthz -\n",  # no description
        "edge edges 8080 http:/healthz - the edge\n",
        "edge edge 80x0 http:/healthz - the edge\n",
        "edge edge 8080 http:/healthz tenx_api:serve the edge\n",  # runs, but not a service
        "api service 8000 http:/readyz tenx_api the api\n",  # no command
    ):
        with pytest.raises(ValueError, match=r"^t:2: "):
            processes.parse(f"# a comment\n{bad}", source="t")


def _bash_view(tmp_path: Path) -> list[list[str]]:
    """The table as deploy/local/lib.sh loads it: name, kind, ports, ready,
    runs and supervisord's priority per program, in its order."""
    script = f"""set -euo pipefail; source {LOCAL}/lib.sh
        for name in $(program_names); do
          ports=$(ports_of "$name" | paste -sd, -)
          echo "$name ${{PROGRAM_KIND[$name]}} ${{ports:--}} ${{PROGRAM_READY[$name]}} \
${{PROGRAM_RUNS[$name]}} $(priority_of "$name")"
        done"""
    env = {**os.environ, "TENX_STATE": str(tmp_path / "state"), "TENX_CACHE": str(tmp_path)}
    listed = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, check=True, timeout=30
    )
    return [line.split() for line in listed.stdout.splitlines()]


def test_the_scripts_read_the_table_as_python_does(tmp_path: Path) -> None:
    seen = _bash_view(tmp_path)
    expected = [
        [p.name, p.kind, ",".join(map(str, p.ports)) or "-", p.ready, ":".join(p.runs or ("-",))]
        for p in processes.programs()
    ]
    assert [row[:5] for row in seen] == expected
    # supervisord starts them in the table's order too, and stops them in reverse.
    priorities = [int(row[5]) for row in seen]
    assert priorities == sorted(priorities)


def test_the_readme_port_table_is_the_tables() -> None:
    written = processes.readme_section(processes.README.read_text())
    assert written == processes.readme_table(processes.programs()), (
        "README.md's port table differs from deploy/local/processes.conf: "
        "python -m tests.support.processes readme"
    )


def _loopback_ports(path: Path, before: str = "") -> set[int]:
    """The ports of the loopback addresses in ``path`` (after ``before``)."""
    return {int(p) for p in re.findall(rf"{before}127\.0\.0\.1:(\d+)", path.read_text())}


def test_the_servers_own_config_files_listen_where_the_table_says() -> None:
    port = processes.port
    assert _loopback_ports(LOCAL / "nginx" / "nginx.conf", before="(?:listen|server) ") == {
        port(name) for name in ("edge", "api-1", "api-2", "auth", "notify", "search-indexer")
    }
    assert _loopback_ports(LOCAL / "kafka" / "server.properties") == set(
        processes.program("kafka").ports
    )
    assert _loopback_ports(LOCAL / "jaeger" / "config.yaml") == set(
        processes.program("jaeger").ports
    )
    es = (LOCAL / "elasticsearch" / "elasticsearch.yml").read_text()
    assert re.findall(r"^(?:http|transport)\.port: (\d+)$", es, re.M) == [
        str(p) for p in processes.program("elasticsearch").ports
    ]


def test_the_chaos_drill_kills_programs_of_the_table_each_with_a_target() -> None:
    from tests.tools import chaos

    assert set(chaos.COMPONENTS) <= {*processes.names(), *ALIASES}
    assert len(set(chaos.COMPONENTS)) == len(chaos.COMPONENTS)
    assert all(chaos.target_s(name) > 0 for name in chaos.COMPONENTS)
