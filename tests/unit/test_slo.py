"""The SLO rules file is generated from tenx_tools/slo.py and up to date;
each SLO has its recording rules and its two multi-window alerts.
(`make test-slo` runs promtool's own checks and unit tests of the file.)"""

from tenx_tools.slo import BURNS, RULES, SLOS, WINDOWS, render, rule_groups


def test_the_rules_file_is_generated_from_the_slos() -> None:
    assert RULES.read_text() == render()


def test_each_slo_records_every_window_and_alerts_on_two_burn_speeds() -> None:
    groups = {group["name"]: group["rules"] for group in rule_groups()["groups"]}
    for slo in SLOS:
        rules = groups[f"slo-{slo.name}"]
        records = [r["record"] for r in rules if "record" in r]
        assert records == [f"slo:{slo.name}:bad_ratio_rate{w}" for w in WINDOWS]
        alerts = {r["alert"]: r["expr"] for r in rules if "alert" in r}
        page = alerts[f"SLOBurn_{slo.name}_page"]
        ticket = alerts[f"SLOBurn_{slo.name}_ticket"]
        for long, short, rate, severity in BURNS:
            expr = page if severity == "page" else ticket
            assert f"bad_ratio_rate{long} > {rate} * {slo.budget}" in expr
            assert f"bad_ratio_rate{short} > {rate} * {slo.budget}" in expr
    assert {"OutboxStalled", "DeadLettersParked", "SpansDropped"} <= {
        r["alert"] for r in groups["event-pipeline"]
    }
