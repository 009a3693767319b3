"""One report of every benchmark's last run (make bench runs them, then this):
bench/results/report.md and report.json, and two charts, throughput.png and
latency.png. Each figure stands beside the baseline its benchmark measured in
the same run (a ratio: the machine is shared and noisy, absolute numbers are
not comparable between runs) and the target it is held to.

    python -m bench.report
"""

import json
import operator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import reduce
from pathlib import Path
from typing import Any

from bench.results import RESULTS


@dataclass(frozen=True)
class Figure:
    """A measured number of one benchmark's JSON (a dotted path), its
    baseline from the same run, its p99, and what it is held to."""

    bench: str
    scenario: str
    unit: str
    value: str
    baseline: tuple[str, str] | None = None  # (what it is, its path)
    p99_ms: str | None = None
    # ("ratio >=" | "value >=" | "value <=" | "p99 <=", number)
    target: tuple[str, float] | None = None


FIGURES = [
    Figure("api_throughput", "cached product read (api, edge, limits, 10 % traces)", "req/s",
           "api_cached_product.rps", ("FastAPI hello world", "fastapi_baseline.rps"),
           "api_cached_product.p99_ms", ("ratio >=", 0.5)),
    Figure("api_throughput", "cached product read, every request traced", "req/s",
           "api_cached_product_all_traced.rps", ("FastAPI hello world", "fastapi_baseline.rps"),
           "api_cached_product_all_traced.p99_ms"),
    Figure("api_throughput", "place an order (saga, outbox)", "req/s", "api_place_order.rps",
           None, "api_place_order.p99_ms"),
    Figure("api_throughput", "SQLAlchemy primary-key lookups", "lookups/s",
           "sqlalchemy_pk_lookups_per_s", ("asyncpg fetchrow", "asyncpg_fetchrow_per_s"),
           None, ("ratio >=", 0.5)),
    Figure("event_pipeline", "outbox to consumer effect", "events/s",
           "outbox_to_effect_latency.rate_per_s", None, "outbox_to_effect_latency.p99_ms",
           ("p99 <=", 100)),
    Figure("event_pipeline", "one relay, 10 % traces", "events/s",
           "relay_throughput.runs.1.events_per_s", ("idempotent producer alone, acks=all",
           "producer_acks_all_idempotent_vs_acks_1.acks_all_idempotent_per_s"), None,
           ("ratio >=", 0.4)),
    Figure("notify", "event to email", "events/s", "event_to_email.rate_per_s", None,
           "event_to_email.p99_ms"),
    Figure("notify", "live feed fan-out (1,000 streams)", "deliveries", "sse_fan_out.deliveries",
           None, "sse_fan_out.p99_ms"),
    Figure("search", "indexer (bulk, external versions)", "docs/s",
           "indexer_throughput.indexer_docs_per_s", ("bulk requests straight to Elasticsearch",
           "indexer_throughput.baseline_direct_bulk_docs_per_s"), None, ("value >=", 5000)),
    Figure("search", "product created to searchable", "products", "create_to_searchable.products",
           None, "create_to_searchable.p99_ms", ("p99 <=", 1500)),
    Figure("tracing", "trivial route, tracing as deployed (10 %)", "req/s",
           "trivial_route.deployed.rps", ("tracing off", "trivial_route.off.rps"),
           "trivial_route.deployed.p99_ms", ("ratio >=", 0.85)),
    Figure("tracing", "place an order, tracing as deployed", "req/s",
           "place_order.deployed.rps", ("tracing off", "place_order.off.rps"),
           "place_order.deployed.p99_ms", ("ratio >=", 0.85)),
    Figure("edge_overhead", "a request through the edge (p50)", "ms", "edge_p50_ms",
           ("straight to the service", "direct_p50_ms"), "edge_p99_ms"),
    Figure("auth", "access-token verification, a token not seen before", "per s",
           "token_verifications_per_s_new_tokens", ("bare P-256 signature check",
           "bare_p256_verifications_per_s")),
    Figure("auth", "log in (Argon2id)", "logins/s", "logins_per_s"),
    Figure("orders", "orders, whole pipeline, closed loop of 16", "orders/s",
           "closed_16.orders_per_s", ("pgbench, one placement's SQL, 16 clients",
           "pgbench_order_shape_tps_16"), "closed_16.http.p99_ms", ("ratio >=", 0.07)),
    Figure("orders", "orders finished by the whole pipeline (phase and drain), closed loop of 16",
           "orders/s", "closed_16.finished_per_s", None, None, ("value >=", 70)),
    Figure("orders", "orders, whole pipeline, closed loop of 64", "orders/s",
           "closed_64.orders_per_s", ("pgbench, one placement's SQL, 64 clients",
           "pgbench_order_shape_tps_64"), "closed_64.http.p99_ms"),
    Figure("orders", "orders, the api alone, closed loop of 16", "orders/s",
           "api_alone_closed_16.orders_per_s", ("pgbench, one placement's SQL, 16 clients",
           "pgbench_order_shape_tps_16"), "api_alone_closed_16.http.p99_ms", ("ratio >=", 0.2)),
    Figure("orders", "orders, open loop at 100/s offered (HTTP p99)", "orders/s",
           "open.orders_per_s", None, "open.http.p99_ms", ("p99 <=", 500)),
    Figure("orders", "open loop: placement to confirmed", "orders",
           "open.placement_to_confirmed.count", None, "open.placement_to_confirmed.p99_ms"),
    Figure("orders", "open loop: placement to email", "orders",
           "open.placement_to_emailed.count", None, "open.placement_to_emailed.p99_ms"),
    Figure("orders", "open loop: placement to indexed", "orders",
           "open.placement_to_indexed.count", None, "open.placement_to_indexed.p99_ms"),
    Figure("orders", "open loop at 80 % of the finished rate (HTTP p99)", "orders/s",
           "open_sustained.orders_per_s", None, "open_sustained.http.p99_ms",
           ("value >=", 60)),
    Figure("orders", "open loop at 80 %: placement to confirmed", "orders",
           "open_sustained.placement_to_confirmed.count", None,
           "open_sustained.placement_to_confirmed.p99_ms", ("p99 <=", 500)),
    Figure("orders", "open loop at 80 %: placement to email", "orders",
           "open_sustained.placement_to_emailed.count", None,
           "open_sustained.placement_to_emailed.p99_ms", ("p99 <=", 1500)),
    Figure("orders", "open loop at 80 %: placement to indexed", "orders",
           "open_sustained.placement_to_indexed.count", None,
           "open_sustained.placement_to_indexed.p99_ms", ("p99 <=", 1500)),
    Figure("orders", "PostgreSQL statements per order (closed loop of 16)", "statements",
           "closed_16.postgres.statements_per_order", None, None, ("value <=", 20)),
    Figure("orders", "CPU per order, every process of the stack (closed loop of 16)", "ms",
           "closed_16.cpu.stack_ms_per_order", None, None, ("value <=", 28)),
    Figure("orders", "whole stack memory (PSS) at idle, after the run", "MB",
           "idle_pss_mb_after", ("before the run", "idle_pss_mb_before"), None,
           ("value <=", 2560)),
]  # fmt: skip


def lookup(document: Any, path: str) -> float | None:
    try:
        found = reduce(
            lambda node, key: node[int(key)] if isinstance(node, list) else node[key],
            path.split("."),
            document,
        )
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return float(found) if isinstance(found, int | float) else None


class MissingFigureError(Exception):
    """A benchmark's results lack a figure the report expects: the two have
    drifted apart (a renamed key would otherwise drop the row silently)."""


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for figure in FIGURES:
        document = results.get(figure.bench)
        if document is None:  # that benchmark has not run
            continue
        value = lookup(document, figure.value)
        if value is None:
            raise MissingFigureError(
                f"{figure.bench}.json has no {figure.value} ({figure.scenario})"
            )
        row: dict[str, Any] = {
            "bench": figure.bench,
            "scenario": figure.scenario,
            "unit": figure.unit,
            "value": value,
        }
        if figure.baseline is not None:
            base = lookup(document, figure.baseline[1])
            row["baseline"] = {"what": figure.baseline[0], "value": base}
            if base:
                row["ratio"] = round(value / base, 2)
        if figure.p99_ms is not None:
            row["p99_ms"] = lookup(document, figure.p99_ms)
        if figure.target is not None:
            kind, bound = figure.target
            measured = {"ratio >=": row.get("ratio"), "value >=": value, "value <=": value,
                        "p99 <=": row.get("p99_ms")}[kind]  # fmt: skip
            compare = operator.le if kind.endswith("<=") else operator.ge
            row["target"] = f"{kind} {bound:g}"
            row["met"] = measured is not None and compare(measured, bound)
        found.append(row)
    return found


def markdown(table: list[dict[str, Any]], when: str) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"Generated {when} by `make bench` (`python -m bench.report`) from the last run of",
        "each benchmark in bench/results/*.json. A ratio compares a figure with the baseline",
        "its benchmark measured in the same run; absolute numbers vary from run to run on",
        "this shared 2-core machine. Charts: [throughput](throughput.png), [latency](latency.png).",
        "",
        "| benchmark | scenario | measured | p99 | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        base = row.get("baseline")
        cells = [
            row["bench"],
            row["scenario"],
            f"{row['value']:,.0f} {row['unit']}",
            f"{row['p99_ms']:g} ms" if row.get("p99_ms") is not None else "",
            f"{base['what']}: {base['value']:,.0f}" if base and base["value"] else "",
            str(row.get("ratio", "")),
            row.get("target", ""),
            {True: "yes", False: "**no**"}.get(bool(row["met"])) if "met" in row else "",
        ]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def charts(table: list[dict[str, Any]], folder: Path) -> list[Path]:
    with_base = [r for r in table if r.get("baseline") and r["baseline"]["value"]]
    with_p99 = [r for r in table if r.get("p99_ms")]
    made = [
        _bars(with_base, "ratio", "ratio", folder / "throughput.png",
              title="Throughput against its baseline",
              label="measured / baseline of the same run (red: the target)"),
        _bars(with_p99, "p99_ms", "p99", folder / "latency.png", log=True,
              title="Latency per scenario", label="p99 latency, ms (log scale; red: the target)"),
    ]  # fmt: skip
    return [path for path in made if path is not None]


def _bars(
    table: list[dict[str, Any]],
    key: str,
    target_kind: str,
    path: Path,
    *,
    title: str,
    label: str,
    log: bool = False,
) -> Path | None:
    """One horizontal bar per scenario, with its target as a red tick."""
    if not table:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 0.6 * len(table) + 1.5))
    axis.barh([f"{r['bench']}: {r['scenario']}" for r in table], [r[key] for r in table])
    for position, row in enumerate(table):
        if row.get("target", "").startswith(target_kind):
            bound = float(row["target"].split()[-1])
            axis.plot([bound, bound], [position - 0.4, position + 0.4], color="#c44e52")
    if log:
        axis.set_xscale("log")
    else:
        axis.axvline(1.0, color="grey", linewidth=1)
    axis.set_xlabel(label)
    axis.set_title(title)
    axis.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def build(folder: Path = RESULTS) -> list[dict[str, Any]]:
    results = {
        path.stem: json.loads(path.read_text())
        for path in sorted(folder.glob("*.json"))
        if path.stem != "report"
    }
    table = rows(results)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    (folder / "report.json").write_text(
        json.dumps({"generated": when, "figures": table}, indent=2) + "\n"
    )
    (folder / "report.md").write_text(markdown(table, when))
    charts(table, folder)
    return table


def main() -> None:
    table = build()
    missed = [row["scenario"] for row in table if row.get("met") is False]
    print(f"bench report: {len(table)} figures in bench/results/report.md"
          + (f"; targets not met: {', '.join(missed)}" if missed else ""))  # fmt: skip


if __name__ == "__main__":
    main()
