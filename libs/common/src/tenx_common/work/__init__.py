"""Work persisted in PostgreSQL and done by leased loops: orchestrated sagas
(``saga``).

Services import from here; the modules import one another directly."""

from tenx_common.work.saga import (
    COMPENSATED,
    COMPENSATING,
    COMPLETED,
    FAILED,
    RUNNING,
    Saga,
    SagaRunner,
    Step,
    Transition,
    divert,
    saga_tables,
    saga_view,
    start_saga,
    step_view,
)

__all__ = [
    "COMPENSATED",
    "COMPENSATING",
    "COMPLETED",
    "FAILED",
    "RUNNING",
    "Saga",
    "SagaRunner",
    "Step",
    "Transition",
    "divert",
    "saga_tables",
    "saga_view",
    "start_saga",
    "step_view",
]
