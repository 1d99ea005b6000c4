"""Loading a model beside serving ones without taking their CPU or the GIL for long.

Loading (Keras builds the model, h5py reads the weights, TensorFlow traces) is mostly
Python holding the GIL, on a thread of the serving process. Two things keep the other
models' latency close to idle while it runs (bench/load_isolation.py):

- the loading thread runs at a lower OS priority (nice, per thread on Linux), so that the
  threads answering requests get a core first when cores are short;
- while a load runs, the interpreter's switch interval drops from 5 ms to 0.5 ms: a request
  thread waiting for the GIL gets it after at most that long, not after 5 ms at every hand-
  over. Restored when the last load ends (it costs throughput when nothing loads).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

LOAD_NICE = 10
LOADING_SWITCH_INTERVAL_S = 0.0005

_lock = threading.Lock()
_loading = 0
_saved_interval = sys.getswitchinterval()


def lower_thread_priority() -> None:
    """Thread-pool initializer: this thread yields the CPU to serving threads."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOAD_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: load anyway
        log.debug("cannot lower the load thread's priority: %s", exc)


def sharing_the_gil(fn):
    """``fn`` with the switch interval lowered while it (and any other load) runs."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        global _loading, _saved_interval
        with _lock:
            if _loading == 0:
                _saved_interval = sys.getswitchinterval()
                sys.setswitchinterval(LOADING_SWITCH_INTERVAL_S)
            _loading += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with _lock:
                _loading -= 1
                if _loading == 0:
                    sys.setswitchinterval(_saved_interval)
    return run
