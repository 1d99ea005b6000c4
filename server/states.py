"""A version's state in this server, and the one mapping of it onto each protocol's words.

kerve's own words (``kerve models show``, the registry RPCs) are the ``VersionState`` names.
TF Serving's ``AVAILABLE`` means loaded and serving, so a version that is only stored is
``END`` there (as TF Serving reports a version it has unloaded), never ``AVAILABLE``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class VersionState(enum.Enum):
    STORED = "STORED"  # in the registry, not loaded here
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"  # with why
    UNLOADING = "UNLOADING"


@dataclass(frozen=True)
class VersionStatus:
    name: str
    version: int
    state: VersionState
    reason: str = ""


# Triton's repository-index words (the v2 protocol leaves the string free).
_KSERVE_WORDS = {VersionState.STORED: "UNAVAILABLE", VersionState.LOADING: "LOADING",
                 VersionState.READY: "READY", VersionState.FAILED: "UNAVAILABLE",
                 VersionState.UNLOADING: "UNLOADING"}


@dataclass(frozen=True)
class StateWords:
    """The words kerve, KServe v2 and TF Serving use for one state."""

    state: VersionState

    @property
    def kerve(self) -> str:
        return self.state.value

    @property
    def kserve(self) -> str:
        return _KSERVE_WORDS[self.state]

    @property
    def tfserving(self) -> int:
        """A tensorflow.serving.ModelVersionStatus.State."""
        # tensorflow_serving's generated protos import TensorFlow, which only the roles
        # that serve models have loaded, so the import waits until a TF Serving call.
        from tensorflow_serving.apis.get_model_status_pb2 import ModelVersionStatus

        return {VersionState.STORED: ModelVersionStatus.END,
                VersionState.LOADING: ModelVersionStatus.LOADING,
                VersionState.READY: ModelVersionStatus.AVAILABLE,
                VersionState.FAILED: ModelVersionStatus.END,
                VersionState.UNLOADING: ModelVersionStatus.UNLOADING}[self.state]


def state_words(state: VersionState) -> StateWords:
    return StateWords(state)
