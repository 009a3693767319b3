"""The local stack's process table, ``deploy/local/processes.conf``, as the
scripts read it: one program a line, in start order, with its kind, ports,
readiness, what a service runs, and a description.

    python -m tests.support.processes readme    rewrites README.md's port table from it
"""

import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, get_args

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "deploy" / "local" / "processes.conf"
README = ROOT / "README.md"
Kind = Literal["data", "infra", "service", "edge"]
COLUMNS = ("name", "kind", "ports", "ready", "runs", "about")
# README.md's port table sits between these two lines.
README_BEGIN = (
    "<!-- made from deploy/local/processes.conf: python -m tests.support.processes readme -->"
)
README_END = "<!-- end of the port table -->"


@dataclass(frozen=True)
class Program:
    name: str
    kind: Kind
    ports: tuple[int, ...]  # the main one first
    ready: str  # http:PATH on the main port, or the name of the scripts' own check
    runs: tuple[str, str] | None  # a service's (package, command)
    about: str

    @property
    def port(self) -> int | None:
        """The main port: the one ``make status`` shows, and readiness asks."""
        return self.ports[0] if self.ports else None


def parse(text: str, *, source: str = "processes.conf") -> tuple[Program, ...]:
    """The programs of a table's text; a ValueError names the line that is wrong."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            found.append(_program(line.split(None, len(COLUMNS) - 1)))
        except ValueError as error:
            raise ValueError(f"{source}:{number}: {error}") from None
    return tuple(found)


def _program(fields: list[str]) -> Program:
    if len(fields) != len(COLUMNS):
        raise ValueError(f"expected the columns {' '.join(COLUMNS)}, got {fields}")
    name, kind, ports, ready, runs, about = fields
    if kind not in get_args(Kind):
        raise ValueError(f"{name}: unknown kind {kind!r}")
    if not re.fullmatch(r"-|\d+(,\d+)*", ports):
        raise ValueError(f"{name}: ports {ports!r} are not PORT,PORT... or -")
    package, _, command = runs.partition(":")
    if (runs != "-") != (kind == "service") or (runs != "-" and not (package and command)):
        raise ValueError(f"{name}: runs {runs!r}: a service's PACKAGE:COMMAND, - for the rest")
    if not re.fullmatch(r"http:/\S*|[a-z]+", ready):
        raise ValueError(f"{name}: ready {ready!r} is neither http:PATH nor a check's name")
    return Program(
        name=name,
        kind=cast(Kind, kind),
        ports=() if ports == "-" else tuple(int(p) for p in ports.split(",")),
        ready=ready,
        runs=(package, command) if runs != "-" else None,
        about=about,
    )


@functools.cache
def programs() -> tuple[Program, ...]:
    """Every program of the stack, in the order it starts them."""
    return parse(TABLE.read_text(), source=str(TABLE.relative_to(ROOT)))


def names(*, kind: Kind | None = None) -> tuple[str, ...]:
    """The programs' names (those of one kind), in start order."""
    return tuple(p.name for p in programs() if kind is None or p.kind == kind)


def program(name: str) -> Program:
    found = {p.name: p for p in programs()}
    if name not in found:
        raise KeyError(f"no program {name!r} in {TABLE.relative_to(ROOT)}")
    return found[name]


def port(name: str, *, index: int = 0) -> int:
    """Port ``index`` of program ``name`` (0, its main one, by default)."""
    return program(name).ports[index]


def ports() -> tuple[int, ...]:
    """Every port the stack listens on, in the table's order."""
    return tuple(p for program in programs() for p in program.ports)


def readme_table(table: tuple[Program, ...]) -> str:
    """README.md's port table: one row per program that listens."""
    rows = [
        f"| {', '.join(str(p) for p in program.ports)} | `{program.name}` | {program.about} |"
        for program in table
        if program.ports
    ]
    return "\n".join(["| port | program | what |", "|---|---|---|", *rows])


def readme_section(readme: str) -> str:
    """What README.md holds between its port table's markers."""
    begin, end = readme.index(README_BEGIN) + len(README_BEGIN), readme.index(README_END)
    return readme[begin:end].strip()


def write_readme() -> None:
    readme = README.read_text()
    begin, end = readme.index(README_BEGIN) + len(README_BEGIN), readme.index(README_END)
    README.write_text(f"{readme[:begin]}\n{readme_table(programs())}\n{readme[end:]}")


if __name__ == "__main__":
    if sys.argv[1:] != ["readme"]:
        raise SystemExit("usage: python -m tests.support.processes readme")
    write_readme()
