"""The one Dockerfile as the builder reads it for one service: its
instructions stage by stage, with the build arguments `make images` passes
put where the builder puts them (never into RUN, CMD or ENTRYPOINT: a RUN's
shell gets them as variables, and the exec form expands nothing)."""

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.deploy.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
NOT_EXPANDED = ("RUN", "CMD", "ENTRYPOINT")
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")

Instruction = tuple[str, str]


@dataclass(frozen=True)
class ImageBuild:
    """One `docker build` of `make images`."""

    dockerfile: str
    tag: str
    args: dict[str, str]
    context: str


def instructions() -> list[Instruction]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def declared(arg: str) -> dict[str, str | None]:
    """An ARG instruction's names, each with its default (None: it has none)."""
    found: dict[str, str | None] = {}
    for word in arg.split():
        name, equals, default = word.partition("=")
        found[name] = default if equals else None
    return found


def required_args() -> set[str]:
    """The build arguments declared before the first FROM without a default."""
    preamble = instructions()[: [kind for kind, _ in instructions()].index("FROM")]
    return {
        name
        for kind, rest in preamble
        if kind == "ARG"
        for name, default in declared(rest).items()
        if default is None
    }


@cache
def image_builds() -> dict[str, ImageBuild]:
    """What `make images` runs, by service: a stand-in docker records it."""
    with tempfile.TemporaryDirectory() as folder:
        docker, calls = Path(folder) / "docker", Path(folder) / "calls"
        docker.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" '' >> '{calls}'\n")
        docker.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
        env["PATH"] = f"{folder}:{env['PATH']}"
        subprocess.run(["make", "-s", "images"], cwd=ROOT, env=env, check=True, capture_output=True)
        recorded = calls.read_text().split("\n\n")
    builds = [parsed(call.split("\n")) for call in recorded if call.strip()]
    return {build.tag.split(":")[0].removeprefix("tenx/"): build for build in builds}


def parsed(argv: list[str]) -> ImageBuild:
    """docker build [-f FILE] [-t TAG] [--build-arg NAME=value]... CONTEXT"""
    assert argv[0] == "build", argv
    options, args, words = {}, {}, iter(argv[1:-1])
    for word in words:
        if word == "--build-arg":
            name, _, value = next(words).partition("=")
            args[name] = value
        else:
            options[word] = next(words)
    return ImageBuild(dockerfile=options["-f"], tag=options["-t"], args=args, context=argv[-1])


def expanded(text: str, names: set[str], scope: dict[str, str]) -> str:
    """The builder's expansion: an argument out of scope is empty; any other
    variable (the base image's PATH) is left as written."""

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        return scope.get(name, "") if name in names else match[0]

    return VARIABLE.sub(value, text)


def stages(service: str) -> list[list[Instruction]]:
    """The instructions of each stage (the ARGs before the first FROM are the
    0th) as the builder reads them for the service's image: the global
    arguments reach the FROM lines only, a stage sees those it declares, and
    each ARG reads NAME=value, the value it takes (a RUN after it gets it)."""
    given = image_builds()[service].args
    names = {name for kind, rest in instructions() if kind == "ARG" for name in declared(rest)}
    defaults: dict[str, str] = {}
    scope = defaults
    found: list[list[Instruction]] = [[]]
    for kind, rest in instructions():
        if kind == "FROM":
            rest, scope = expanded(rest, names, defaults), {}
            found.append([])
        elif kind not in NOT_EXPANDED:
            rest = expanded(rest, names, scope)
        if kind == "ARG":
            for name, default in declared(rest).items():
                inherited = default if default is not None else defaults.get(name, "")
                scope[name] = given.get(name, inherited)
            rest = " ".join(f"{name}={scope[name]}" for name in declared(rest))
        found[-1].append((kind, rest))
    return found


def image_env(service: str) -> dict[str, str]:
    """The ENV of the service's image (the final stage's)."""
    env: dict[str, str] = {}
    for kind, rest in stages(service)[-1]:
        if kind == "ENV":
            env |= dict(re.findall(r"(\w+)=(\S+)", rest))
    return env
