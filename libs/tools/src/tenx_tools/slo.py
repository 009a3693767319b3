"""Service level objectives as code, and the Prometheus rules made from them.

Each SLO names the ratio of bad events (its SLI, as PromQL over a window) and
its objective. From them come recording rules for the bad ratio over the
windows the alerts need, and multi-window, multi-burn-rate alerts (the Google
SRE workbook's): a page when the error budget of 30 days burns 14.4 times too
fast over 1 h (and still over the last 5 min) or 6 times over 6 h (and 30 min);
a ticket at 3 times over 1 d (and 2 h) or once over 3 d (and 6 h). The short
window makes an alert stop soon after the burning stops.

    python -m tenx_tools.slo write   # deploy/observability/slo-rules.yml
    python -m tenx_tools.slo check   # the file is up to date (a unit test runs it)

``make test-slo`` checks the file with promtool and runs its unit tests
(``deploy/observability/slo-rules.test.yml``). Scrape jobs are named after the
services (``api``, ``search-indexer``, ...).
"""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[4]
RULES = ROOT / "deploy" / "observability" / "slo-rules.yml"

# (long window, short window, burn rate, severity)
BURNS = (
    ("1h", "5m", 14.4, "page"),
    ("6h", "30m", 6.0, "page"),
    ("1d", "2h", 3.0, "ticket"),
    ("3d", "6h", 1.0, "ticket"),
)
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@dataclass(frozen=True, slots=True)
class SLO:
    name: str  # recording rules are slo:<name>:bad_ratio_rate<window>
    description: str
    objective: float  # the share of good events, e.g. 0.999
    bad: str  # PromQL of the bad events' rate, {w} for the window
    total: str  # PromQL of all events' rate, {w} for the window

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 6)


SLOS = (
    SLO(
        name="api_availability",
        description="99.9 % of the public API's requests do not fail with a 5xx",
        objective=0.999,
        bad='sum(rate(http_requests_total{{job="api",status=~"5.."}}[{w}]))',
        total='sum(rate(http_requests_total{{job="api"}}[{w}]))',
    ),
    SLO(
        name="api_latency",
        description="99 % of the public API's requests are answered within 250 ms",
        objective=0.99,
        bad=(
            'sum(rate(http_request_duration_seconds_count{{job="api"}}[{w}]))'
            ' - sum(rate(http_request_duration_seconds_bucket{{job="api",le="0.25"}}[{w}]))'
        ),
        total='sum(rate(http_request_duration_seconds_count{{job="api"}}[{w}]))',
    ),
    SLO(
        name="search_freshness",
        description="99 % of changes are in the search index within 2.5 s of their event",
        objective=0.99,
        bad=(
            'sum(rate(tenx_search_index_freshness_seconds_count{{job="search-indexer"}}[{w}]))'
            " - sum(rate(tenx_search_index_freshness_seconds_bucket"
            '{{job="search-indexer",le="2.5"}}[{w}]))'
        ),
        total='sum(rate(tenx_search_index_freshness_seconds_count{{job="search-indexer"}}[{w}]))',
    ),
)

# Thresholds that are not ratios: the event pipeline must keep moving.
OUTBOX_MAX_AGE_S = 60


def rule_groups() -> dict[str, Any]:
    groups = []
    for slo in SLOS:
        records = [
            {
                "record": f"slo:{slo.name}:bad_ratio_rate{w}",
                "expr": f"({slo.bad.format(w=w)}) / ({slo.total.format(w=w)})",
                "labels": {"slo": slo.name},
            }
            for w in WINDOWS
        ]
        alerts = []
        for severity in ("page", "ticket"):
            burns = [b for b in BURNS if b[3] == severity]
            condition = " or ".join(
                f"(slo:{slo.name}:bad_ratio_rate{long} > {rate} * {slo.budget}"
                f" and slo:{slo.name}:bad_ratio_rate{short} > {rate} * {slo.budget})"
                for long, short, rate, _ in burns
            )
            alerts.append(
                {
                    "alert": f"SLOBurn_{slo.name}_{severity}",
                    "expr": condition,
                    "labels": {"severity": severity, "slo": slo.name},
                    "annotations": {
                        "summary": f"{slo.description}: the error budget burns too fast",
                        "description": (
                            f"Objective {slo.objective:.3%} over 30 days; "
                            + ", ".join(f"{r}x over {lw}/{sw}" for lw, sw, r, _ in burns)
                            + " trips this alert."
                        ),
                    },
                }
            )
        groups.append({"name": f"slo-{slo.name}", "rules": records + alerts})
    groups.append(
        {
            "name": "event-pipeline",
            "rules": [
                {
                    "alert": "OutboxStalled",
                    "expr": "max by (job, table) (tenx_outbox_oldest_age_seconds)"
                    f" > {OUTBOX_MAX_AGE_S}",
                    "for": "2m",
                    "labels": {"severity": "page"},
                    "annotations": {
                        "summary": "An outbox row waits more than a minute: is its relay running?"
                    },
                },
                {
                    "alert": "DeadLettersParked",
                    "expr": "max by (job, consumer) (tenx_dead_letters_parked) > 0",
                    "for": "10m",
                    "labels": {"severity": "ticket"},
                    "annotations": {
                        "summary": "Events wait in a dead-letter table for an operator"
                    },
                },
                {
                    "alert": "SpansDropped",
                    "expr": "sum by (job) (increase(tenx_spans_dropped_total[10m])) > 0",
                    "labels": {"severity": "ticket"},
                    "annotations": {"summary": "The span export queue is full: traces are lost"},
                },
            ],
        }
    )
    return {"groups": groups}


def render() -> str:
    header = "# Generated by `python -m tenx_tools.slo write` from tenx_tools/slo.py.\n"
    return header + str(yaml.safe_dump(rule_groups(), sort_keys=False, width=120))


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    if command == "write":
        RULES.parent.mkdir(parents=True, exist_ok=True)
        RULES.write_text(render())
        print(RULES.relative_to(ROOT))
        return
    if not RULES.exists() or RULES.read_text() != render():
        print(f"{RULES.relative_to(ROOT)} is not up to date: run `python -m tenx_tools.slo write`")
        sys.exit(1)


if __name__ == "__main__":
    main()
