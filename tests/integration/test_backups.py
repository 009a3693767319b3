"""The cluster's backups (pgBackRest): WAL reaches the repository, backups
exist, and backups past the retention expire.

The retention test backs the live cluster up into a repository of its own
(the stack's configuration, with another repository path), so the stack's
own backups are left as they are.
"""

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import STATE

BACKUPS = (STATE / "backups").resolve()
CONFIG = BACKUPS / "pgbackrest.conf"


def pgbackrest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", "pgbackrest", f"--config={CONFIG}", "--stanza=tenx",
         *args],
        capture_output=True, text=True, check=False, cwd="/", timeout=600,
    )  # fmt: skip


def info(*args: str) -> Any:
    """The stanza's part of ``pgbackrest info --output=json``."""
    done = pgbackrest(*args, "info", "--output=json")
    assert done.returncode == 0, done.stderr
    [stanza] = json.loads(done.stdout)
    return stanza


def setting(name: str) -> str:
    for line in CONFIG.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} is not set in {CONFIG}")


@pytest.fixture
def own_repository() -> Iterator[str]:
    path = BACKUPS / f"retention-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    shutil.chown(path, "postgres")
    try:
        yield f"--repo1-path={path}"
    finally:
        shutil.rmtree(path)


def test_wal_reaches_the_repository_and_a_backup_exists() -> None:
    # check: switches to a new WAL segment on the primary and waits until
    # that segment is in the repository.
    checked = pgbackrest("check")
    assert checked.returncode == 0, checked.stderr
    stanza = info()
    assert stanza["backup"], "no backup: make up takes the first full one"
    assert stanza["backup"][0]["type"] == "full"
    [archive] = stanza["archive"]
    assert archive["max"] >= archive["min"]


def test_full_backups_beyond_the_retention_expire(own_repository: str) -> None:
    kept = int(setting("repo1-retention-full"))
    assert kept >= 2
    made = pgbackrest(own_repository, "stanza-create")
    assert made.returncode == 0, made.stderr
    labels = []
    for _ in range(kept + 1):
        # The WAL goes to the stack's repository, not this one: no archive check.
        done = pgbackrest(own_repository, "--type=full", "--no-archive-check", "backup")
        assert done.returncode == 0, done.stderr
        labels.append(info(own_repository)["backup"][-1]["label"])
    left = info(own_repository)["backup"]
    assert [b["label"] for b in left] == labels[1:]  # the oldest full expired


def test_the_repository_is_outside_every_data_folder() -> None:
    repo = Path(setting("repo1-path")).resolve()
    data = (STATE / "postgres").resolve()
    assert not repo.is_relative_to(data)
