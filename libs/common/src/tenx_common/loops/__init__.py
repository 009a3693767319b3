"""Background loops: jobs that repeat while a process runs (``periodic``)
and wake-ups by LISTEN/NOTIFY with a poll as fallback (``wakeup``).

Services import from here; the modules import one another directly."""

from tenx_common.loops.periodic import every, stop_task
from tenx_common.loops.wakeup import listening, nap

__all__ = ["every", "listening", "nap", "stop_task"]
