"""Background loops: jobs that repeat while a process runs (``periodic``),
wake-ups by LISTEN/NOTIFY with a poll as fallback (``wakeup``) and the wait
before trying again (``backoff``).

Services import from here; the modules import one another directly."""

from tenx_common.loops.backoff import backoff_s
from tenx_common.loops.periodic import every, stop_task
from tenx_common.loops.wakeup import listening, nap

__all__ = ["backoff_s", "every", "listening", "nap", "stop_task"]
