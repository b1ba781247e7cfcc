"""Ctrl-C held back while a native library initialises.

A KeyboardInterrupt is raised wherever the main thread happens to be. Inside ``import torch`` that
is often in the middle of torch's C++ start-up (pybind11 calls back into Python there): the run
then died of ``terminate called after throwing an instance of 'pybind11::error_already_set'``
(abort, exit -6), or printed its one ``interrupted:`` line and still died of SIGINT at exit (-2),
instead of the clean exit 130. Seen by sending SIGINT to ``imgrag align`` 2-3 s into its model
load, a few times in 40 runs. So the first import of such a library runs with SIGINT recorded, not
raised; the KeyboardInterrupt comes the moment the import is done, from plain Python code.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType


@contextmanager
def interrupts_held() -> Iterator[None]:
    """SIGINT inside the block is raised as KeyboardInterrupt when the block ends. Only where Python's
    own Ctrl-C handler is in place (main thread, not ignored, not an application's own handler)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    got: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if got:
            raise KeyboardInterrupt


def held_import(name: str) -> ModuleType:
    """``importlib.import_module(name)``; its first import with Ctrl-C held (see the module doc)."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    with interrupts_held():
        return importlib.import_module(name)
