"""Shared helpers for tests/deploy: the repository's paths and the external tools.

A missing tool skips its tests with the reason, except under CI (the environment variable
``CI`` set and not "0"/"false"), where it fails them: CI must run every check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE_TARGETS = ("base", "overlays/one-node", "overlays/scaled")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str, how: str) -> None:
    """Skip (or, under CI, fail) the calling test because a tool is missing."""
    message = f"{what} is missing: {how}"
    if in_ci():
        pytest.fail(f"{message} (CI is set, so this fails instead of skipping)")
    pytest.skip(message)


def find_executable(name: str) -> str | None:
    """A program from this interpreter's environment (pip-installed tools such as hadolint
    land beside python, which need not be on PATH), else from PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which(name)


@cache
def _kubectl() -> tuple[str | None, str]:
    path = shutil.which("kubectl")
    if path is None:
        return None, "kubectl not found on PATH (install it with .ci/tools)"
    out = subprocess.run([path, "version", "--client"], check=False, capture_output=True,
                         text=True, timeout=60).stdout
    match = re.search(r"Kustomize Version: v(\d+)", out)
    if not match or int(match.group(1)) < 5:
        return None, f"{path} lacks kustomize v5 ({out.strip()!r}); run .ci/tools"
    return path, ""


def kubectl() -> str:
    path, why = _kubectl()
    if path is None:
        missing("kubectl", why)
    return path


@cache
def _render(target: str, kubectl_path: str) -> str:
    proc = subprocess.run([kubectl_path, "kustomize", str(DEPLOY / target)],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize deploy/{target} failed:\n{proc.stderr}"
    return proc.stdout


def render(target: str) -> list[dict]:
    """The resources `kubectl kustomize deploy/TARGET` renders (rendered once per run)."""
    return [doc for doc in yaml.safe_load_all(_render(target, kubectl())) if doc]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def load_yaml_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@cache
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())
