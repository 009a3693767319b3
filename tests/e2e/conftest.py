"""End-to-end tests: the running stack, through the edge."""

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support import processes

EDGE = f"http://127.0.0.1:{processes.port('edge')}"
JAEGER = f"http://127.0.0.1:{processes.port('jaeger')}"  # its query API


@pytest.fixture
async def edge() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=EDGE, timeout=10) as client:
        yield client


@pytest.fixture
async def jaeger() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=JAEGER, timeout=10) as client:
        yield client


def new_traceparent() -> tuple[str, str]:
    """A W3C traceparent with a fresh, sampled trace id, and that id."""
    trace_id = secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-01", trace_id


async def wait_for_trace(
    jaeger: httpx.AsyncClient, trace_id: str, *, timeout_s: float = 30
) -> dict[str, Any]:
    """Poll Jaeger's query API until the trace is there (spans are batched)."""
    async with asyncio.timeout(timeout_s):
        while True:
            response = await jaeger.get(f"/api/traces/{trace_id}")
            if response.status_code == 200 and response.json().get("data"):
                trace: dict[str, Any] = response.json()["data"][0]
                return trace
            await asyncio.sleep(0.5)


def trace_services(trace: dict[str, Any]) -> set[str]:
    return {process["serviceName"] for process in trace["processes"].values()}


def trace_instances(trace: dict[str, Any]) -> set[str]:
    return {
        tag["value"]
        for process in trace["processes"].values()
        for tag in process.get("tags", [])
        if tag["key"] == "service.instance.id"
    }
