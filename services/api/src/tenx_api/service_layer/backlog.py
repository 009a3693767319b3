"""The bound on the order pipeline's backlog: the api stops taking new orders
while the saga runners are too far behind.

Placing an order is cheaper than finishing it (authorizing the payment,
confirming, notifying, indexing), so an api that accepts every order it can
place lets the saga backlog grow for as long as the load lasts, and every
order waits longer to be confirmed. Each api instance reads, every
``saga_backlog_poll_s``, how long the oldest due saga step has waited for a
runner (one statement on the partial index ``ix_sagas_due``); while that is
more than ``saga_backlog_max_age_s``, ``POST /v1/orders`` is answered 503
``overloaded`` with ``Retry-After`` before anything is written, by the shared
admission middleware, to which the api's wiring names this refusal (so it is
answered before a place or a rate-limit token is taken; a replay of a placed
order is answered again once the backlog is back under the bound).
Sagas waiting out a lease or a retry's backoff are not due and do not count.
The age is on the api's ``/metrics`` as ``tenx_saga_backlog_age_seconds``.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.ext.asyncio import AsyncEngine

from tenx_common.data.db import read_value
from tenx_common.web import ProblemError, overloaded

OLDEST_DUE_AGE = (
    "SELECT coalesce(extract(epoch FROM now() - min(next_attempt_at)), 0)::float8"
    " FROM sagas WHERE status IN ('running', 'compensating') AND next_attempt_at <= now()"
)


@dataclass(eq=False)
class SagaBacklog:
    max_age_s: float
    oldest_due_age_s: float = 0.0  # as last measured

    async def measure(self, primary: AsyncEngine) -> None:
        self.oldest_due_age_s = float(await read_value(primary, OLDEST_DUE_AGE))

    def refusal(self) -> ProblemError | None:
        """The answer to a new order while the backlog is past its bound."""
        if self.oldest_due_age_s <= self.max_age_s:
            return None
        return overloaded(
            f"Orders wait {self.oldest_due_age_s:.0f} s to be processed, more than "
            f"{self.max_age_s:.0f} s; retry shortly.",
            retry_after_s=2,
        )

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "tenx_saga_backlog_age_seconds",
            "How long the oldest due saga step has waited for a runner",
            value=self.oldest_due_age_s,
        )
