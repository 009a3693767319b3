"""notify, measured on the running stack.

- Event to email: 200 OrderConfirmed events for one signed-up user, produced
  to Kafka at 20 a second (as the api's relay would); for each, the time from
  the produce to the message's arrival in the mail catcher (its ``Created``),
  p50 and p99. This covers the notify consumer, the delivery loop and SMTP.
- SSE fan-out: 1,000 live streams on one notify instance (10 users, 100 streams
  each: a user's read rate limit allows about 100 at once); 20 notifications
  are published on each user's feed channel, as the worker does after a
  commit, each stamped with its send time; the time until every stream has
  it, p50 and p99 over all deliveries; and notify's resident memory per
  connection (its RSS with the streams open, less before, over 1,000).

Writes bench/results/notify.json. Run: make bench (the stack must be up).
"""

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from tests.support.stack import EDGE, STRONG, eventually, log_in, pid_of

from tenx_common.events import cloud_event
from tenx_common.events.orders_orders import OrderConfirmed
from tenx_notify.service_layer.feed import CHANNEL
from tenx_notify.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
NOTIFY = "http://127.0.0.1:8002"
MAILPIT = "http://127.0.0.1:8025"
EMAILS = 200
EMAIL_RATE = 20
USERS = 10
STREAMS_PER_USER = 100
MESSAGES = 20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def sign_up(edge: httpx.AsyncClient) -> tuple[str, str, dict[str, str]]:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    created = await edge.post(
        "/v1/auth/signup", json={"email": email, "password": STRONG, "name": "Bench"}
    )
    created.raise_for_status()
    return created.json()["id"], email, await log_in(edge, email, STRONG)


async def event_to_email(settings: Settings, edge: httpx.AsyncClient) -> dict[str, Any]:
    user_id, email, _ = await sign_up(edge)
    async with httpx.AsyncClient(base_url=MAILPIT, timeout=30) as mailpit:

        async def welcomed() -> bool:
            found = await mailpit.get("/api/v1/search", params={"query": f"to:{email}"})
            return bool(found.json()["messages"])

        await eventually(welcomed)  # notify knows the address
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=0
        )
        await producer.start()
        sent: dict[str, float] = {}
        try:
            start = time.perf_counter()
            for n in range(EMAILS):
                await asyncio.sleep(max(0.0, start + n / EMAIL_RATE - time.perf_counter()))
                order_id = uuid.uuid4()
                event = OrderConfirmed(
                    order_id=order_id,
                    user_id=uuid.UUID(user_id),
                    total_cents=1000 + n,
                    currency="EUR",
                    payment_id=f"bench-{n}",
                )
                document = cloud_event(event, source="/tenx/bench")
                await producer.send_and_wait(
                    "orders.orders", key=str(order_id).encode(), value=json.dumps(document).encode()
                )
                sent[str(order_id)] = time.time()
        finally:
            await producer.stop()

        async def arrived() -> list[dict[str, Any]] | None:
            found = await mailpit.get(
                "/api/v1/search", params={"query": f"to:{email}", "limit": EMAILS + 10}
            )
            messages = [
                m for m in found.json()["messages"] if m["Subject"] == "Your order is confirmed"
            ]
            return messages if len(messages) >= EMAILS else None

        messages = await eventually(arrived, timeout_s=120)
        latencies = []
        for message in messages:
            text = (await mailpit.get(f"/api/v1/message/{message['ID']}")).json()["Text"]
            mailed = next(o for o in sent if o in text)
            created = datetime.fromisoformat(message["Created"].replace("Z", "+00:00"))
            latencies.append((created.timestamp() - sent[mailed]) * 1000)
    return {
        "events": EMAILS,
        "rate_per_s": EMAIL_RATE,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": round(max(latencies), 1),
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def sse_fan_out(settings: Settings, edge: httpx.AsyncClient) -> dict[str, Any]:
    notify_pid = pid_of("notify")
    users = [await sign_up(edge) for _ in range(USERS)]
    limits = httpx.Limits(max_connections=USERS * STREAMS_PER_USER + 10)
    received: list[float] = []
    connected = 0
    all_connected = asyncio.Event()
    before = rss_mb(notify_pid)

    async with httpx.AsyncClient(base_url=NOTIFY, timeout=120, limits=limits) as client:

        async def listen(headers: dict[str, str]) -> None:
            nonlocal connected
            async with client.stream("GET", "/v1/notifications/stream", headers=headers) as live:
                live.raise_for_status()
                connected += 1
                if connected == USERS * STREAMS_PER_USER:
                    all_connected.set()
                got = 0
                async for line in live.aiter_lines():
                    if line.startswith("data: "):
                        document = json.loads(line[6:])
                        received.append((time.time() - document["data"]["sent_at"]) * 1000)
                        got += 1
                        if got == MESSAGES:
                            return

        tasks = [
            asyncio.create_task(listen(headers))
            for _, _, headers in users
            for _ in range(STREAMS_PER_USER)
        ]
        await asyncio.wait_for(all_connected.wait(), 120)
        await asyncio.sleep(2)  # every stream has subscribed
        during = rss_mb(notify_pid)
        redis = Redis.from_url(
            settings.redis_url, password=settings.redis_password.get_secret_value() or None
        )
        try:
            for n in range(MESSAGES):
                for user_id, _, _ in users:
                    document = {
                        "id": str(uuid.uuid4()),
                        "seq": 10**12 + n,
                        "kind": "bench",
                        "title": "bench",
                        "body": "",
                        "data": {"sent_at": time.time()},
                        "created_at": datetime.now(UTC).isoformat(),
                        "read_at": None,
                    }
                    await redis.publish(CHANNEL + user_id, json.dumps(document))
                await asyncio.sleep(0.2)
        finally:
            await redis.aclose()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return {
        "streams": USERS * STREAMS_PER_USER,
        "messages_per_stream": MESSAGES,
        "deliveries": len(received),
        "p50_ms": percentile(received, 0.50),
        "p99_ms": percentile(received, 0.99),
        "max_ms": round(max(received), 1),
        "notify_rss_mb_before": round(before, 1),
        "notify_rss_mb_with_streams": round(during, 1),
        "kb_per_connection": round((during - before) * 1024 / (USERS * STREAMS_PER_USER), 1),
    }


async def run() -> dict[str, Any]:
    settings = Settings()
    async with httpx.AsyncClient(base_url=EDGE, timeout=30) as edge:
        return {
            "event_to_email": await event_to_email(settings, edge),
            "sse_fan_out": await sse_fan_out(settings, edge),
        }


def main() -> None:
    results = asyncio.run(run())
    out = ROOT / "bench" / "results" / "notify.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
