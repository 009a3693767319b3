"""bench-orders' arithmetic: percentiles, statements and CPU per order."""

from bench.orders import (
    cpu_per_order,
    finished_per_s,
    server_side,
    statements_per_order,
    summary,
)


def test_percentiles_of_a_phase() -> None:
    values = [float(n) for n in range(1, 101)]
    assert summary(values) == {"count": 100, "p50_ms": 51.0, "p99_ms": 100.0, "max_ms": 100.0}
    assert summary([]) == {"count": 0}


def test_statements_and_commits_per_order_are_the_differences_over_the_phase() -> None:
    before = {
        "calls": {("tenx_api", 1): (100, "BEGIN"), ("tenx_api", 2): (10, "INSERT INTO orders")},
        "commits": {"tenx_api": 1000, "tenx_notify": 50},
    }
    after = {
        "calls": {
            ("tenx_api", 1): (140, "BEGIN"),
            ("tenx_api", 2): (30, "INSERT INTO orders"),
            ("tenx_notify", 3): (20, "SELECT 1"),  # first seen in the phase
        },
        "commits": {"tenx_api": 1040, "tenx_notify": 70},
    }
    found = statements_per_order(before, after, orders=20)
    assert found["statements_per_order"] == 4.0  # (40 + 20 + 20) / 20
    assert found["by_database"] == {"tenx_api": 3.0, "tenx_notify": 1.0}
    assert found["commits_per_order"] == {"tenx_api": 2.0, "tenx_notify": 1.0}
    assert found["top"][0] == {"database": "tenx_api", "statement": "BEGIN", "per_order": 2.0}


def test_cpu_per_order_leaves_the_benchmark_out_of_the_stacks_sum() -> None:
    before = {"api-1": 10.0, "postgres-primary": 5.0, "(this benchmark)": 1.0}
    after = {"api-1": 12.0, "postgres-primary": 6.0, "(this benchmark)": 3.0}
    found = cpu_per_order(before, after, orders=100)
    assert found["ms_per_order"] == {
        "api-1": 20.0,
        "(this benchmark)": 20.0,
        "postgres-primary": 10.0,
    }
    assert found["stack_ms_per_order"] == 30.0


def test_the_pipelines_rate_counts_the_drain_after_the_phase() -> None:
    # 600 placed in 60 s, the last finished 20 s after the phase: 7.5 a second.
    assert finished_per_s(600, 60.0, 20.0) == 7.5
    assert finished_per_s(600, 60.0, 0.0) == 10.0
    assert finished_per_s(600, 60.0, None) == 2.0  # not drained within DRAIN_TIMEOUT_S (240 s)


def test_the_server_sides_slow_share_is_of_the_201s_over_the_phase() -> None:
    latencies_ms = [100.0, 200.0, 600.0, 900.0]  # the client's: 2 of 4 over 500 ms
    before = {"created": 10.0, "within": 30.0, "all": 31.0}
    before |= {"admitted": 20.0, "admitted_within": 20.0, "refused": 5.0, "refused_within": 5.0}
    # 20 more answers, 4 of them 201s; 1 more over 500 ms as the servers timed it
    after = {"created": 14.0, "within": 49.0, "all": 51.0}
    # 10 more admitted, 2 of them after waiting over 500 ms; 4 more refused,
    # 1 of them after waiting over 100 ms
    after |= {"admitted": 30.0, "admitted_within": 28.0, "refused": 9.0, "refused_within": 8.0}
    # The 4 refusals' answers (503) as the servers timed them: 3 within 100 ms
    before |= {"answered_refused": 5.0, "answered_refused_within": 5.0}
    after |= {"answered_refused": 9.0, "answered_refused_within": 8.0}
    assert server_side(before, after, latencies_ms) == {
        "accepted_over_500_ms_server": 0.25,
        "accepted_over_500_ms_client": 0.5,
        "admitted_waited_over_500_ms": 0.2,
        "refused_waited_over_100_ms": 0.25,
        "refused_over_100_ms_server": 0.25,
    }
