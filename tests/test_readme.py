"""Every snippet in README.md, run as written against a live server, so the README cannot
drift: shell lines as commands (kerve's against the server; make, bench and python lines as
they are; `kerve serve`, docker and kubectl lines checked for flags and paths, since no
container engine or cluster runs here), Python blocks in one interpreter, the TOML block
parsed. A line the test does not know how to check fails it: teach it here."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib

import numpy as np
import pytest

from tests.kerve_process import REPO, KerveProcess, server_env

pytestmark = pytest.mark.slow
README = REPO / "README.md"
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def blocks(language: str) -> list[tuple[int, str]]:
    text = README.read_text()
    return [(text[:m.start()].count("\n") + 1, m.group(2)) for m in BLOCK.finditer(text)
            if m.group(1) == language]


def shell_lines() -> list[tuple[int, list[str]]]:
    lines = []
    for start, code in blocks("sh"):
        for offset, line in enumerate(code.replace("\\\n", " ").splitlines()):
            words = shlex.split(line, comments=True)
            if words:
                lines.append((start + 1 + offset, words))
    return lines


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory):
    """A server of its own, so that versions count from 1 as the README's do."""
    proc = KerveProcess(tmp_path_factory.mktemp("readme-server"), "--demo", plugins=())
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def workdir(readme_server, tmp_path_factory):
    """The files the README's commands name, and the models they call (demo, reviews)."""
    import keras

    from kerve.clients.client import Client

    work = tmp_path_factory.mktemp("readme")
    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax",
                                                   name="probabilities")(inputs))
    model.save(work / "model.keras")
    (work / "model.json").write_text(model.to_json())
    model.save_weights(work / "model.weights.h5")
    x = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    np.savez(work / "golden.npz", **{"input/features": x,  # what model.keras gives
                                     "output/probabilities": model.predict(x, verbose=0)})
    model.set_weights([w * 2 for w in model.get_weights()])
    model.save_weights(work / "retrained.weights.h5")
    np.save(work / "x.npy", x)
    (work / "x.json").write_text(json.dumps([[0.1, 0.2, 0.3, 0.4]]))
    np.savez(work / "inputs.npz", features=x)
    (work / "sentences.json").write_text(json.dumps(["great film", "dull"]))
    sentence = keras.Input((), dtype="string", name="sentence")
    lookup = keras.layers.StringLookup(vocabulary=["great film", "dull"], output_mode="one_hot")
    reviews = keras.Model(sentence, keras.layers.Dense(1, name="score")(lookup(sentence)))
    reviews.save(work / "reviews.keras")
    with Client(readme_server.target, timeout=120) as client:
        client.upload("reviews", keras_path=work / "reviews.keras")
    return work


def _help(*command: str) -> str:
    return subprocess.run([sys.executable, "-m", "kerve.clients.cli", *command, "--help"],
                          capture_output=True, text=True, env=server_env(), timeout=60).stdout


def _check_flags(words: list[str], line: int) -> None:
    command = [w for w in words[1:3] if not w.startswith("-")][:1]
    text = _help(*command)
    for flag in (w.split("=")[0] for w in words if w.startswith("--")):
        assert flag in text, f"README line {line}: kerve {' '.join(command)} has no {flag}"


def _run(words: list[str], line: int, cwd, env) -> None:
    done = subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"README line {line}: {' '.join(words)}\n{done.stderr[-2000:]}"


def test_shell_lines_run_as_written(readme_server, workdir):
    env = server_env() | {"KERVE_SERVER": readme_server.target}
    for line, words in shell_lines():
        while re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value before a command
            words = words[1:]
        tool = words[0]
        if tool == "kerve":
            remote = any(w.endswith(":8500") and ".svc" in w for w in words)
            if words[1] == "serve" or remote:  # a server, or a cluster's: flags must exist
                _check_flags(words, line)
            else:
                _run([sys.executable, "-m", "kerve.clients.cli", *words[1:]], line, workdir,
                     env)
        elif tool == "make":
            _run(["make", "-n", *words[1:]], line, REPO, env)
        elif tool == "pip":
            assert words == ["pip", "install", "."], f"README line {line}"
            assert (REPO / "pyproject.toml").is_file()  # tests/deploy matches the image to it
        elif tool == "python":
            _run([sys.executable, *words[1:]], line, workdir, env)
        elif tool.endswith("/python") and words[1] == "-m":
            _run([sys.executable, "-m", words[2], "--help"], line, REPO, env)
        elif tool in ("docker", "kubectl"):
            for word in words:
                if word.startswith("deploy/") or word == ".":
                    assert (REPO / word).exists(), f"README line {line}: no {word}"
        else:
            pytest.fail(f"README line {line}: {tool!r} is not checked by tests/test_readme.py")


DRIVER = """
import json, sys, traceback
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for line, code in blocks:
    try:
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        sys.exit(f"README python block at line {line} failed")
"""


def test_python_blocks_run_as_written(readme_server, workdir, tmp_path):
    code = [(line, text.replace('"localhost:8500"', f'"{readme_server.target}"'))
            for line, text in blocks("python")]
    assert code, "no Python block found"
    (tmp_path / "blocks.json").write_text(json.dumps(code))
    done = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path / "blocks.json")],
                          cwd=workdir, env=server_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]


def test_toml_blocks_parse():
    for line, text in blocks("toml"):
        data = tomllib.loads(text)
        assert "kerve.plugins" in data["project"]["entry-points"], f"README line {line}"
