"""The images: one Dockerfile for every service, given each service's names
by `make images` as build arguments; multi-stage, a pinned base and uv, a
non-root user, nothing secret, the build context cut by .dockerignore; and
the build rehearsed without Docker, service by service: its build stage's
steps run here, on the files the context would hold, and the result runs
the service's command through the image's entrypoint."""

import fnmatch
import importlib
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, SERVICES, named, render, versions
from tests.deploy.dockerfile import (
    Instruction,
    declared,
    image_builds,
    image_env,
    instructions,
    required_args,
    stages,
)


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore's rule: the last pattern that matches the path (or a
    folder above it) decides; "!" lets it back in."""
    decision = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        regex = fnmatch.translate(glob).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if glob.startswith("**/"):
            regex = "(.*/)?" + fnmatch.translate(glob[3:]).replace(".*", "[^/]*")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            decision = not negate
    return decision


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def context_files() -> list[str]:
    """What a clean checkout sends to docker build."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [path for path in tracked if not ignored(path, dockerignore())]


def test_make_images_builds_every_service_from_the_one_dockerfile() -> None:
    builds = image_builds()
    assert sorted(builds) == sorted(SERVICES)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for service, build in builds.items():
        assert (build.dockerfile, build.context) == ("Dockerfile", ".")
        assert build.tag == f"tenx/{service}:{version}"
        assert set(build.args) == required_args(), "every argument it needs, and no other"


@pytest.mark.parametrize("service", SERVICES)
def test_the_build_arguments_are_the_services_own_names(service: str) -> None:
    args = image_builds()[service].args
    folder = ROOT / "services" / args["SERVICE"]
    assert args["SERVICE"] == service
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    assert args["PACKAGE"] == project["name"]
    assert (folder / "src" / args["MODULE"] / "__main__.py").exists()
    settings = importlib.import_module(f"{args['MODULE']}.settings").Settings
    assert settings.model_config["env_prefix"] == args["ENV_PREFIX"] + "_"


def test_a_build_without_an_argument_stops_at_once_naming_it() -> None:
    build = stages("api")[1]
    [guard] = [rest for kind, rest in build if kind == "RUN" and ":?" in rest]
    first_sync = next(i for i, (kind, rest) in enumerate(build) if "uv sync" in rest)
    assert build.index(("RUN", guard)) < first_sync
    given = image_builds()["api"].args
    subprocess.run(["sh", "-c", guard], env=given, check=True)
    for name in required_args():
        env = {k: v for k, v in given.items() if k != name}
        failed = subprocess.run(["sh", "-c", guard], env=env, capture_output=True, text=True)
        assert failed.returncode != 0, name
        assert f"{name}: is not set" in failed.stderr


def runtime_command(runtime: list[Instruction]) -> list[str]:
    """What the container runs: the ENTRYPOINT, then the CMD."""
    [entrypoint] = [rest for kind, rest in runtime if kind == "ENTRYPOINT"]
    [command] = [rest for kind, rest in runtime if kind == "CMD"]
    found: list[str] = json.loads(entrypoint) + json.loads(command)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_the_dockerfile_is_multi_stage_pinned_non_root_and_holds_no_secret(service: str) -> None:
    preamble, *built = stages(service)
    assert len(built) >= 2, "a build stage and a small runtime stage"
    args = {  # the values each ARG takes
        name: value or ""
        for kind, rest in preamble + built[0]
        if kind == "ARG"
        for name, value in declared(rest).items()
    }
    image = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image  # a patch release, slim
    assert args["UV_VERSION"] == versions()["UV_VERSION"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert ">=3.11" in requires
    runtime = built[-1]
    users = [rest for kind, rest in runtime if kind == "USER"]
    assert users, "the runtime stage names its user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "a numeric user (runAsNonRoot can check it)"
    assert uid != "0"
    assert ("EXPOSE", "8000") in runtime
    as_read = [instruction for stage in (preamble, *built) for instruction in stage]
    for kind, rest in instructions() + as_read:  # as written, and with the service's names
        assert kind != "ADD", "COPY only: nothing fetched at build time by URL"
        if kind in ("ENV", "ARG"):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|_KEY)\w*=", rest), rest


@pytest.mark.parametrize("service", SERVICES)
def test_the_entrypoint_becomes_python_running_the_service(service: str, tmp_path: Path) -> None:
    """The entrypoint's shell, run here with a stand-in python: it execs
    python -m <the service's package> <the command>, so python is PID 1."""
    python = tmp_path / "python"
    python.write_text('#!/bin/sh\necho "$$"\nprintf \'%s\\n\' "$@"\n')
    python.chmod(0o755)
    env = image_env(service) | {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    process = subprocess.Popen(
        runtime_command(stages(service)[-1]), env=env, stdout=subprocess.PIPE, text=True
    )
    pid, *argv = process.communicate()[0].splitlines()
    assert process.returncode == 0
    package = "tenx_" + service.replace("-", "_")
    assert argv == ["-m", package, "serve"]
    assert int(pid) == process.pid, "the shell execs python (the stop signal reaches it)"


def test_the_image_listens_where_the_manifests_probe() -> None:
    deployment = named(render("kind"), "Deployment", "api")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]
    for service in SERVICES:
        prefix = "TENX_" + service.replace("-", "_").upper()
        env = image_env(service)
        assert env[f"{prefix}_PORT"] == "8000"
        assert env[f"{prefix}_HOST"] == "0.0.0.0"


def test_the_build_context_holds_the_sources_and_nothing_else() -> None:
    files = context_files()
    assert "uv.lock" in files
    assert "pyproject.toml" in files
    assert "services/api/src/tenx_api/app.py" in files
    assert "libs/common/src/tenx_common/runtime/app.py" in files
    for path in files:
        assert not path.startswith(("tests/", "deploy/", "bench/", "docs/", ".state", ".venv"))
        assert not path.endswith("Dockerfile")


@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
def test_the_build_stage_rehearsed_here_installs_a_runnable_service(
    service: str, tmp_path: Path
) -> None:
    context, workdir, venv = tmp_path / "context", tmp_path / "src", tmp_path / "app"
    for path in context_files():
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, context / path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_PROJECT", "VIRTUAL_ENV"))}
    uv = Path(os.environ.get("TENX_CACHE", "/var/cache/tenx")) / "tools" / "bin" / "uv"
    _, build, runtime = stages(service)
    ran = 0
    for kind, rest in build[1:]:
        if kind == "ARG":
            env |= {name: value or "" for name, value in declared(rest).items()}
        elif kind == "ENV":
            env |= {k: v.replace("/app", str(venv)) for k, v in re.findall(r"(\w+)=(\S+)", rest)}
        elif kind == "WORKDIR":
            workdir.mkdir(parents=True, exist_ok=True)
        elif kind == "COPY":
            *sources, target = rest.split()
            destination = workdir / target
            for source in sources:
                origin = context / source
                assert origin.exists(), f"COPY {source}: not in the build context"
                if origin.is_dir():
                    shutil.copytree(origin, destination, dirs_exist_ok=True)
                else:
                    destination.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, destination / origin.name)
        elif kind == "RUN" and "uv sync" in rest:
            command = re.sub(r"--mount=\S+\s*", "", rest).replace("uv sync", f"{uv} sync", 1)
            subprocess.run(command, shell=True, cwd=workdir, env=env, check=True)  # noqa: S602
            ran += 1
    assert ran == 2  # the dependencies, then the service
    package = "tenx_" + service.replace("-", "_")
    image = {k: v.replace("/app", str(venv)) for k, v in image_env(service).items()}
    image["PATH"] = image["PATH"].replace("$PATH", os.environ["PATH"])
    entrypoint = runtime_command(runtime)[:-1]  # the CMD (serve) replaced by --help
    help_text = subprocess.run(
        [*entrypoint, "--help"], env=image, capture_output=True, text=True, check=True
    ).stdout
    for command in ("serve", "migrate", "relay", "worker"):
        assert command in help_text
    site = next((venv / "lib").glob("python3.11/site-packages"))
    assert (site / package / "migrations" / "env.py").exists(), "migrations ship in the image"
    assert not (site / "pytest").exists(), "no development tools in the image"
    assert (site / "tenx_common" / "runtime" / "app.py").exists()
    assert not (site / "tenx_tools").exists(), "no build or operations tools in the image"
