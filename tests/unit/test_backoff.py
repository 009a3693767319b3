"""The one backoff rule, with each caller's numbers as they were written by hand."""

import pytest

from tenx_common.loops import backoff_s


def test_the_backoff_doubles_up_to_its_cap() -> None:
    delays = [backoff_s(attempt, base_s=0.2, max_s=1.0) for attempt in range(1, 6)]
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])


def test_without_a_cap_it_keeps_doubling() -> None:
    assert [backoff_s(attempt, base_s=0.5) for attempt in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def test_the_saga_steps_retry_matches_its_old_formula() -> None:
    for attempts in range(1, 12):
        assert backoff_s(attempts, base_s=1.0, max_s=30.0) == min(30.0, 0.5 * 2**attempts)


def test_jitter_draws_below_the_ceiling() -> None:
    for attempt in range(1, 10):
        ceiling = backoff_s(attempt, base_s=1.0, max_s=300.0)
        assert 0 <= backoff_s(attempt, base_s=1.0, max_s=300.0, jitter=True) <= ceiling


def test_a_huge_attempt_count_does_not_overflow() -> None:
    assert backoff_s(5000, base_s=1.0, max_s=30.0) == 30.0
