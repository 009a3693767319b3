"""`make down` leaves no process of the project running (supervisord and
everything it runs, their children too) and frees every port.

This layer runs last in `make test`: it stops the stack that the others used.
"""

import os
import subprocess
from pathlib import Path

from tests.support import processes

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "X"


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (postgres backends, nginx workers...)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


def _listening(port: int) -> bool:
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return bool(out.strip())


def _up() -> dict[str, int]:
    """Every process the stack's supervisor runs, and supervisord: name -> pid."""
    listed = subprocess.run(
        [str(ROOT / "deploy/local/stack"), "pids"], capture_output=True, text=True, check=True
    ).stdout
    return {name: int(pid) for name, pid in (line.split() for line in listed.splitlines())}


def test_down_stops_every_process_and_frees_every_port() -> None:
    pids = _up()
    # Every program of the process table, and supervisord itself.
    assert sorted(pids) == sorted([*processes.names(), "supervisord"]), "the stack was not fully up"
    children = {name: _descendants(pid) for name, pid in pids.items()}

    subprocess.run([str(ROOT / "deploy/local/stack"), "down"], check=True, timeout=400)

    still = {name: pid for name, pid in pids.items() if _alive(pid)}
    assert still == {}
    orphans = {name: [c for c in kids if _alive(c)] for name, kids in children.items()}
    assert {name: kids for name, kids in orphans.items() if kids} == {}
    assert [port for port in processes.ports() if _listening(port)] == []
    assert _up() == {}
