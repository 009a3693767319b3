"""The rate-limit middleware when Redis cannot be reached: the 503 of any
dependency that is down (redis_unavailable, Retry-After), and the request never
reaches its handler."""

from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError

from tenx_common.security.throttle import RateLimitMiddleware
from tenx_common.settings import RateLimitSettings


class UnreachableRedis:
    async def eval(self, *args: Any) -> Any:
        raise RedisConnectionError("Connection refused")


def test_limits_that_cannot_be_checked_refuse_with_503() -> None:
    reached: list[str] = []
    app = FastAPI()
    app.state.wiring = SimpleNamespace(redis=UnreachableRedis(), verifier=None)
    app.add_middleware(RateLimitMiddleware, settings=RateLimitSettings())

    @app.post("/things")
    async def make_thing() -> dict[str, str]:
        reached.append("handler")
        return {"made": "yes"}

    answer = TestClient(app).post("/things")

    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "2"
    assert answer.json()["code"] == "redis_unavailable"
    assert answer.json()["dependency"] == "redis"
    assert reached == []
