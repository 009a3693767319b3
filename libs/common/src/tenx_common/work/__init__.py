"""Work persisted in PostgreSQL and done by leased loops: orchestrated sagas
(``saga``).

Services import from here; the modules import one another directly."""

from tenx_common.work.saga import (
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
    "Saga",
    "SagaRunner",
    "SagaStatus",
    "Step",
    "Transition",
    "divert",
    "saga_tables",
    "saga_view",
    "start_saga",
    "step_view",
]
