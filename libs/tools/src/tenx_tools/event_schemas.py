"""JSON Schemas of the events, generated from the models into ``schemas/events``,
and the check that a change to a published version stays backward compatible.

A version (``...v1``) is a contract: consumers written against it must still
read every later event of that type. Against the schema as first committed,
a change must not remove, rename or retype a required field, nor add a
required one (old events lack it). Anything else needs a new version.

    python -m tenx_tools.event_schemas write   # regenerate the files
    python -m tenx_tools.event_schemas check   # files up to date and compatible
"""

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import tenx_common.events as events_package
from tenx_common.events import Event

ROOT = Path(__file__).resolve().parents[4]  # the repository (the workspace installs it editable)
SCHEMA_DIR = ROOT / "schemas" / "events"


def event_types() -> dict[str, type[Event]]:
    """Every concrete event (one with a TYPE), by type, from the topic modules."""
    for module in pkgutil.iter_modules(events_package.__path__):
        if module.name != "schemas":
            importlib.import_module(f"{events_package.__name__}.{module.name}")
    found: dict[str, type[Event]] = {}
    pending: list[type[Event]] = [Event]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "TYPE" in cls.__dict__ and cls.__module__.startswith(events_package.__name__):
            found[cls.TYPE] = cls  # (tests define events of their own elsewhere)
    return dict(sorted(found.items()))


def schema_of(event: type[Event]) -> dict[str, Any]:
    schema = event.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:tenx:event:{event.TYPE}",
        "x-topic": event.TOPIC,
        **schema,
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, event in event_types().items():
        path = directory / f"{event_type}.json"
        path.write_text(render(schema_of(event)))
        written.append(path)
    return written


def _field_type(schema: dict[str, Any], prop: dict[str, Any]) -> Any:
    """A property's type, with local $refs resolved so renamed definitions compare equal."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        target = schema.get("$defs", {}).get(name, {})
        return _field_type(schema, target) if "$ref" in target else _shape(schema, target)
    return _shape(schema, prop)


def _shape(schema: dict[str, Any], prop: dict[str, Any]) -> Any:
    shape: dict[str, Any] = {
        k: v for k, v in prop.items() if k in {"type", "format", "enum", "const", "anyOf"}
    }
    if "items" in prop:
        shape["items"] = _field_type(schema, prop["items"])
    if "properties" in prop:
        shape["properties"] = {
            name: _field_type(schema, sub) for name, sub in sorted(prop["properties"].items())
        }
        shape["required"] = sorted(prop.get("required", []))
    return shape


def incompatibilities(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why events valid under ``new`` may break a consumer written for ``old``."""
    problems = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    for name in sorted(old_required):
        if name not in new_props:
            problems.append(f"required field {name!r} was removed or renamed")
        elif name not in new_required:
            problems.append(f"required field {name!r} became optional")
        elif _field_type(old, old_props[name]) != _field_type(new, new_props[name]):
            problems.append(f"required field {name!r} changed its type")
    for name in sorted(new_required - old_required):
        problems.append(f"new required field {name!r}: events already published lack it")
    return problems


def _git(*args: str) -> str:
    # git from PATH, with fixed arguments and repository paths only.
    done = subprocess.run(  # noqa: S603
        ["git", *args],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def first_committed(path: Path) -> dict[str, Any] | None:
    """The file as the commit that added it had it; None when it is not committed yet."""
    relative = path.relative_to(ROOT).as_posix()
    added = _git("log", "--diff-filter=A", "--format=%H", "--", relative).split()
    if not added:
        return None
    first: dict[str, Any] = json.loads(_git("show", f"{added[-1]}:{relative}"))
    return first


def check(directory: Path = SCHEMA_DIR) -> list[str]:
    """Every problem: a file missing or stale, a change not backward compatible."""
    problems = []
    for event_type, event in event_types().items():
        path = directory / f"{event_type}.json"
        current = schema_of(event)
        if not path.exists() or path.read_text() != render(current):
            problems.append(f"{path.name}: not up to date; run `make schemas`")
        baseline = first_committed(path) if path.exists() else None
        if baseline is not None:
            problems += [f"{event_type}: {why}" for why in incompatibilities(baseline, current)]
    return problems


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    if command == "write":
        for path in write():
            print(path.relative_to(ROOT))
        return
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
