"""On the local stack's shared cores a request comes before background work:
the processes that answer requests run at niceness 0 once they serve, the
workers and the search-indexer at 5 (deploy/local/services.sh), in every
thread."""

from pathlib import Path

import pytest

from tests.support import processes
from tests.support.stack import pid_of

BACKGROUND = {"api-worker", "auth-worker", "notify-worker", "search-indexer"}


def thread_niceness(pid: int) -> set[int]:
    """The niceness of each thread of ``pid`` (/proc's stat, field 19)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        found.add(int(stat.rsplit(")", 1)[1].split()[16]))
    return found


@pytest.mark.parametrize("name", processes.names(kind="service"))
def test_a_background_process_runs_nicer_than_one_that_answers_requests(name: str) -> None:
    assert thread_niceness(pid_of(name)) == ({5} if name in BACKGROUND else {0})
