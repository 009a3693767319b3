"""make bench's report: each figure beside its same-run baseline and target,
as Markdown, JSON and two PNG charts."""

import json
from pathlib import Path

import pytest
from bench.report import MissingFigureError, build


def test_the_report_holds_each_figure_with_its_baseline_and_target(tmp_path: Path) -> None:
    (tmp_path / "tracing.json").write_text(
        json.dumps(
            {
                "trivial_route": {
                    "off": {"rps": 1000, "p99_ms": 10.0},
                    "deployed": {"rps": 900, "p99_ms": 12.0},
                },
                "place_order": {"off": {"rps": 20}, "deployed": {"rps": 10, "p99_ms": 900.0}},
            }
        )
    )
    latency = {"create_to_searchable": {"products": 60, "p99_ms": 2000.0}}
    (tmp_path / "search.json").write_text(json.dumps(latency))
    with pytest.raises(MissingFigureError, match=r"indexer_throughput\.indexer_docs_per_s"):
        build(tmp_path)  # a benchmark that ran but lacks a figure is an error
    indexer = {"indexer_docs_per_s": 6000, "baseline_direct_bulk_docs_per_s": 12000}
    (tmp_path / "search.json").write_text(json.dumps(latency | {"indexer_throughput": indexer}))
    table = build(tmp_path)
    by_scenario = {row["scenario"]: row for row in table}
    trivial = by_scenario["trivial route, tracing as deployed (10 %)"]
    assert (trivial["ratio"], trivial["met"], trivial["p99_ms"]) == (0.9, True, 12.0)
    order = by_scenario["place an order, tracing as deployed"]
    assert (order["ratio"], order["met"]) == (0.5, False)
    searchable = by_scenario["product created to searchable"]
    assert (searchable["target"], searchable["met"]) == ("p99 <= 1500", False)
    indexer_row = by_scenario["indexer (bulk, external versions)"]
    assert (indexer_row["ratio"], indexer_row["met"]) == (0.5, True)
    assert len(table) == 4  # benchmarks without results are left out, not invented

    report = (tmp_path / "report.md").read_text()
    assert "| tracing | trivial route, tracing as deployed (10 %) | 900 req/s | 12 ms |" in report
    assert "**no**" in report
    assert json.loads((tmp_path / "report.json").read_text())["figures"] == table
    for chart in ("throughput.png", "latency.png"):
        assert (tmp_path / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
