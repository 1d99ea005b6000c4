"""Shared fixtures: one real kerve server per test session (plus one that allows unsafe
Lambdas, started only when a test asks for it), the seed zoo, and helpers."""

from __future__ import annotations

import ast
import sys
import warnings

import numpy as np
import pytest

from tests.kerve_process import SEEDZOO, KerveProcess

pytest_plugins = ["tests.stores"]

if not (SEEDZOO / "seedzoo_models.py").is_file():
    raise pytest.UsageError(
        f"the seed zoo is missing at {SEEDZOO}: put the shared/ folder beside this checkout, "
        "or point KERVE_SEEDZOO=/path/to/seedzoo at it")
sys.path.insert(0, str(SEEDZOO))


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    proc = KerveProcess(tmp_path_factory.mktemp("kerve"))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def unsafe_server(tmp_path_factory):
    proc = KerveProcess(tmp_path_factory.mktemp("kerve-unsafe"), "--allow-unsafe-lambda")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def client(server):
    from kerve.clients.client import Client

    with Client(server.target, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def zoo():
    import seedzoo_models

    return seedzoo_models


class Built:
    """A zoo model with random weights, its inputs, and its expected outputs."""

    def __init__(self, zoo, name: str, seed: int = 0) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model, make_inputs = zoo.ZOO[name]()
        zoo.randomize_weights(self.model, seed=seed)
        self.inputs = make_inputs(3, seed=seed)
        outputs = self.model.predict(self.inputs, verbose=0)
        self.outputs = outputs if isinstance(outputs, list) else [outputs]

    @property
    def input_names(self) -> list[str]:
        """The InputLayer names (Keras numbers auto-named layers per process)."""
        return [t._keras_history.operation.name for t in self.model.inputs]

    @property
    def output_names(self) -> list[str]:
        """Output names as kerve gives them: the output layers' names, repeats _1, _2, ..."""
        from kerve.registry.signature import unique_names

        return unique_names([t._keras_history.operation.name for t in self.model.outputs])

    def input_dict(self, names: list[str]) -> dict[str, np.ndarray]:
        if isinstance(self.inputs, dict):
            return dict(self.inputs)
        return {names[0]: self.inputs}

    def save(self, directory, legacy: bool = False):
        """architecture.json + weights (Keras 3 layout, or legacy layer-name .h5)."""
        directory.mkdir(parents=True, exist_ok=True)
        arch = directory / "architecture.json"
        arch.write_text(self.model.to_json())
        if legacy:
            weights = directory / "legacy.h5"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model.save(weights)
        else:
            weights = directory / "model.weights.h5"
            self.model.save_weights(weights)
        return arch, weights

    def save_keras(self, path):
        self.model.save(path)
        return path


@pytest.fixture(scope="session")
def built(zoo):
    cache: dict[tuple[str, int], Built] = {}

    def get(name: str, seed: int = 0) -> Built:
        if (name, seed) not in cache:
            cache[(name, seed)] = Built(zoo, name, seed)
        return cache[(name, seed)]
    return get


def _zoo_names() -> tuple[list[str], list[str]]:
    """The zoo's model names, read from its source: collecting tests imports no Keras."""
    tree = ast.parse((SEEDZOO / "seedzoo_models.py").read_text())
    values = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
              for target in node.targets if isinstance(target, ast.Name)}
    names = [key.value for key in values["ZOO"].keys]
    unsafe = {elt.value for elt in values["NEEDS_UNSAFE"].elts}
    return [n for n in names if n not in unsafe], sorted(unsafe)


SAFE_ZOO, UNSAFE_ZOO = _zoo_names()
