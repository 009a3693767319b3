"""Work persisted in PostgreSQL and done by leased loops: the engine every
leased job is built on (``leased``) and orchestrated sagas (``saga``).

Services import from here; the modules import one another directly."""

from tenx_common.work.leased import (
    LeasedLoop,
    Tally,
    Wakeups,
    claim_due,
    fenced,
    tally_counter,
)
from tenx_common.work.saga import (
    BatchEffect,
    Effect,
    Saga,
    SagaRunner,
    SagaStatus,
    Step,
    Transition,
    divert,
    saga_tables,
    saga_view,
    start_saga,
    step_view,
)

__all__ = [
    "BatchEffect",
    "Effect",
    "LeasedLoop",
    "Saga",
    "SagaRunner",
    "SagaStatus",
    "Step",
    "Tally",
    "Transition",
    "Wakeups",
    "claim_due",
    "divert",
    "fenced",
    "saga_tables",
    "saga_view",
    "start_saga",
    "step_view",
    "tally_counter",
]
