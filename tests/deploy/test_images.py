"""The images: one Dockerfile per service, multi-stage, a pinned base and uv,
a non-root user, nothing secret, the build context cut by .dockerignore; and
the build rehearsed without Docker: its build stage's steps run here, on the
files the context would hold, and the result runs the service's command."""

import fnmatch
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, SERVICES, named, render, versions

Instruction = tuple[str, str]


def instructions(dockerfile: Path) -> list[Instruction]:
    text = dockerfile.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def stages(dockerfile: Path) -> list[list[Instruction]]:
    """The instructions of each stage (the ARGs before the first FROM are the 0th)."""
    found: list[list[Instruction]] = [[]]
    for instruction in instructions(dockerfile):
        if instruction[0] == "FROM":
            found.append([])
        found[-1].append(instruction)
    return found


def dockerfile(service: str) -> Path:
    return ROOT / "services" / service / "Dockerfile"


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


@pytest.mark.parametrize("service", SERVICES)
def test_the_dockerfile_is_multi_stage_pinned_non_root_and_holds_no_secret(service: str) -> None:
    path = dockerfile(service)
    preamble, *built = stages(path)
    assert len(built) >= 2, "a build stage and a small runtime stage"
    args = dict(rest.split("=", 1) for kind, rest in preamble + built[0] if kind == "ARG")
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
    package = "tenx_" + service.replace("-", "_")
    assert ("ENTRYPOINT", f'["python", "-m", "{package}"]') in runtime
    assert ("EXPOSE", "8000") in runtime
    for kind, rest in instructions(path):
        assert kind != "ADD", "COPY only: nothing fetched at build time by URL"
        if kind in ("ENV", "ARG"):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|_KEY)\w*=", rest), rest


def test_the_image_listens_where_the_manifests_probe() -> None:
    deployment = named(render("kind"), "Deployment", "api")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]
    for service in SERVICES:
        prefix = "TENX_" + service.replace("-", "_").upper()
        assert f"{prefix}_PORT=8000" in dockerfile(service).read_text()
        assert f"{prefix}_HOST=0.0.0.0" in dockerfile(service).read_text()


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
    _, build, _ = stages(dockerfile(service))
    ran = 0
    for kind, rest in build[1:]:
        if kind == "ENV":
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
    python = venv / "bin" / "python"
    package = "tenx_" + service.replace("-", "_")
    help_text = subprocess.run(
        [str(python), "-m", package, "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("serve", "migrate", "relay", "worker"):
        assert command in help_text
    site = next((venv / "lib").glob("python3.11/site-packages"))
    assert (site / package / "migrations" / "env.py").exists(), "migrations ship in the image"
    assert not (site / "pytest").exists(), "no development tools in the image"
    assert (site / "tenx_common" / "runtime" / "app.py").exists()
    assert not (site / "tenx_tools").exists(), "no build or operations tools in the image"
