"""Rate limits on the real Redis: the bucket itself, and the middleware across
both api instances."""

import asyncio
import time
import uuid
from collections import Counter

import httpx
from redis.asyncio import Redis

from tenx_api.settings import Settings as ApiSettings
from tenx_common.data.cache import create_redis
from tenx_common.security.rate_limits import Rate, TokenBuckets, lease_size
from tests.support.stack import api_metric

STRONG = "correct horse battery staple 42"


def count_evals(redis: Redis) -> Counter[str]:
    """Counts the scripts ``redis`` runs from now on (``total()``)."""
    calls: Counter[str] = Counter()
    real_eval = redis.eval

    async def counted_eval(*args: object) -> object:
        calls["eval"] += 1
        return await real_eval(*args)  # type: ignore[arg-type]

    redis.eval = counted_eval  # type: ignore[method-assign,assignment]
    return calls


async def test_a_bucket_passes_its_burst_then_its_rate(api_settings: ApiSettings) -> None:
    redis = create_redis(api_settings)
    try:
        buckets = TokenBuckets(redis, prefix=f"it:{uuid.uuid4().hex}")
        rate = Rate(per_minute=60, burst=5)
        started = time.monotonic()
        verdicts = [await buckets.take("k", rate) for _ in range(20)]
        elapsed = time.monotonic() - started
    finally:
        await redis.aclose()
    allowed = sum(v.allowed for v in verdicts)
    assert 5 <= allowed <= 5 + int(elapsed) + 1
    assert verdicts[0].remaining == 4
    refused = [v for v in verdicts if not v.allowed]
    assert refused
    assert all(v.retry_after_s >= 1 for v in refused)


async def test_two_instances_leasing_tokens_share_one_bucket(api_settings: ApiSettings) -> None:
    redis = create_redis(api_settings)
    calls = count_evals(redis)
    rate = Rate(per_minute=60, burst=200)  # leases of 10
    try:
        prefix = f"it:{uuid.uuid4().hex}"
        instances = [TokenBuckets(redis, prefix=prefix) for _ in range(2)]
        started = time.monotonic()
        # All at once: requests that arrive while a lease is fetched share it.
        verdicts = await asyncio.gather(*(instances[i % 2].take("k", rate) for i in range(600)))
        elapsed = time.monotonic() - started
    finally:
        await redis.aclose()
    allowed = sum(v.allowed for v in verdicts)
    unspent = 2 * (lease_size(rate) - 1)
    assert 200 - unspent <= allowed <= 200 + int(elapsed) + 1
    assert calls.total() < 600 / 5  # most requests spent a lease or a remembered refusal
    assert all(v.remaining >= 0 for v in verdicts)


async def test_buckets_no_lease_answers_are_taken_in_one_round_trip(
    api_settings: ApiSettings,
) -> None:
    # A request's address and user buckets (writes are not leased): one call
    # for both, each bucket still on its own; a full one refuses, the other passes.
    redis = create_redis(api_settings)
    calls = count_evals(redis)
    roomy, tight = Rate(per_minute=600, burst=20), Rate(per_minute=1, burst=1)
    try:
        buckets = TokenBuckets(redis, prefix=f"it:{uuid.uuid4().hex}")
        first = await buckets.take_all([("ip", roomy), ("user", tight)])
        second = await buckets.take_all([("ip", roomy), ("user", tight)])
        calls_for_two = calls.total()
        third = await buckets.take_all([("ip", roomy), ("other-user", tight)])
    finally:
        await redis.aclose()
    assert [v.allowed for v in first] == [True, True]
    assert [v.remaining for v in first] == [19, 0]
    assert [v.allowed for v in second] == [True, False]  # the user's is spent
    assert second[0].remaining == 18
    assert second[1].retry_after_s >= 1
    assert calls_for_two == 2  # one round trip a request
    assert [v.allowed for v in third] == [True, True]
    assert third[0].remaining == 17


async def test_a_user_over_the_limit_is_refused_by_both_instances_together(
    api_settings: ApiSettings,
) -> None:
    per_minute = api_settings.rate_limit_user_read_per_minute
    burst = per_minute * api_settings.rate_limit_burst_seconds // 60
    async with httpx.AsyncClient(timeout=10) as client:
        email = f"rl-{uuid.uuid4().hex[:10]}@example.com"
        auth = "http://127.0.0.1:8001/v1/auth"
        await client.post(f"{auth}/signup", json={"email": email, "password": STRONG, "name": "R"})
        token = (
            await client.post(f"{auth}/token", json={"email": email, "password": STRONG})
        ).json()["access_token"]
        headers = {
            "Authorization": f"Bearer {token}",
            "X-Forwarded-For": f"10.77.{uuid.uuid4().int % 250}.1",
        }
        counted = await api_metric("tenx_rate_limited_total", scope="user", route_class="read")
        started = time.monotonic()
        # Twice the burst, spread over both instances, as fast as they answer.
        responses = await asyncio.gather(
            *(
                client.get(f"http://127.0.0.1:{8000 if i % 2 else 8010}/v1/me", headers=headers)
                for i in range(2 * burst)
            )
        )
        elapsed = time.monotonic() - started
    passed = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(passed) + len(refused) == len(responses)
    refill = int(elapsed * per_minute / 60) + 1
    # One shared bucket, not one per instance; each instance may leave part of a
    # lease unspent (refused early, never late).
    unspent = 2 * (lease_size(Rate(per_minute, burst)) - 1)
    assert burst - unspent <= len(passed) <= burst + refill
    problem = refused[0]
    assert problem.headers["content-type"] == "application/problem+json"
    assert problem.json()["code"] == "rate_limited"
    assert int(problem.headers["retry-after"]) >= 1
    assert problem.headers["ratelimit-remaining"] == "0"
    assert int(passed[0].headers["ratelimit-limit"]) == burst
    # Each refusal is counted, by the bucket that refused.
    now = await api_metric("tenx_rate_limited_total", scope="user", route_class="read")
    assert now - counted == len(refused)
