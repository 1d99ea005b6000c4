"""Free memory on the GPU a server runs on: what a version must fit in to be loaded there.

Read from NVML (the nvidia-ml-py package, imported only on a GPU), which counts what every
process holds, not only this one. Memory TensorFlow has reserved but is not using counts as
used: the figure errs on the side of refusing.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def gpu_free_bytes(device: str) -> int | None:
    """Free bytes on ``device`` ("/GPU:N"), or None where it cannot be read (no NVML)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(_nvml_index(device))
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).free)
    except pynvml.NVMLError as exc:
        log.debug("cannot read %s's free memory: %s", device, exc)
        return None


def _nvml_index(device: str) -> int:
    """NVML numbers every GPU; TensorFlow numbers those CUDA_VISIBLE_DEVICES lets it see."""
    index = int(device.rsplit(":", 1)[-1])
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
               if d.strip()]
    if index < len(visible) and visible[index].isdigit():
        return int(visible[index])
    return index
