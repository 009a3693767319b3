"""Background loops: jobs that repeat while a process runs (``periodic``),
wake-ups by LISTEN/NOTIFY with a poll as fallback (``wakeup``), the wait
before trying again (``backoff``) and loops restarted after a failure
(``supervised``), and writes grouped while the one before runs (``group_commit``).

Services import from here; the modules import one another directly."""

from tenx_common.loops.backoff import backoff_s
from tenx_common.loops.group_commit import GroupCommit
from tenx_common.loops.periodic import every, repeat, stop_task
from tenx_common.loops.supervised import log_failure, pause, supervised
from tenx_common.loops.wakeup import listening, nap

__all__ = [
    "GroupCommit",
    "backoff_s",
    "every",
    "listening",
    "log_failure",
    "nap",
    "pause",
    "repeat",
    "stop_task",
    "supervised",
]
