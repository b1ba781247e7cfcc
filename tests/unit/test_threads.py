"""Idle model-runtime threads sleep instead of spinning (indexing/threads.py); outputs do not change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _policy(**env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "IMGRAG_THREAD_SPIN")}
    full.update(env, PYTHONPATH=str(ROOT))
    code = "import indexing, os; print(os.environ.get('OMP_WAIT_POLICY', '-'))"
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, check=True).stdout.strip()


def test_openmp_wait_policy_defaults_to_passive_and_yields_to_the_user() -> None:
    assert _policy() == "PASSIVE"
    assert _policy(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    assert _policy(IMGRAG_THREAD_SPIN="1") == "-"


@pytest.mark.parametrize(("cpus", "user", "expected"), [(2, None, "2"), (3, None, "3"), (1, None, None), (8, None, None), (2, "1", "1")])
def test_lance_gets_every_cpu_for_compute_on_a_small_machine(
    monkeypatch: pytest.MonkeyPatch, cpus: int, user: str | None, expected: str | None
) -> None:
    """Lance reserves 2 CPUs for IO and keeps one compute thread on a 2-3 CPU machine, so a fused
    search's two kNN routes queued on it; imgrag gives that pool every CPU there (the user's value wins)."""
    from imgrag.indexing import threads

    monkeypatch.setattr(threads.os, "cpu_count", lambda: cpus)
    if user is None:
        monkeypatch.delenv("LANCE_CPU_THREADS", raising=False)
    else:
        monkeypatch.setenv("LANCE_CPU_THREADS", user)
    threads.set_lance_cpu_threads()
    assert os.environ.get("LANCE_CPU_THREADS") == expected


def test_rapid_onnx_sessions_are_created_without_spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    from omegaconf import DictConfig

    from imgrag.indexing import threads
    from rapidocr.inference_engine.onnxruntime.main import OrtInferSession

    monkeypatch.delenv("IMGRAG_THREAD_SPIN", raising=False)
    threads.patch_ort_sessions()
    threads.patch_ort_sessions()  # idempotent: wrapped once
    opts = OrtInferSession._init_sess_opts(DictConfig({"enable_cpu_mem_arena": False}))
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert OrtInferSession._init_sess_opts.__wrapped__.__name__ == "_init_sess_opts"
    assert not hasattr(OrtInferSession._init_sess_opts.__wrapped__, "__wrapped__")


def test_each_page_worker_gets_its_own_session_slot_with_a_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from imgrag.indexing import threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    per, init = threads.worker_slots(2)
    assert per == 2
    barrier = threading.Barrier(2)

    def slot(_: int) -> tuple[int, int] | None:
        barrier.wait(timeout=10)  # both workers exist at once: two threads, two slots
        return threads.session_slot()

    with ThreadPoolExecutor(2, initializer=init) as pool:
        slots = sorted(pool.map(slot, range(2)))
    assert slots == [(2, 0), (2, 1)]
    assert threads.session_slot() is None  # the calling thread keeps the shared sessions
    assert threads.worker_slots(8)[0] == 1  # never fewer than one thread


def test_imgrag_sessions_keep_the_memory_arena_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgrag.indexing import threads
    from imgrag.indexing.ocr import _rapid_params

    monkeypatch.delenv("IMGRAG_ORT_ARENA", raising=False)
    assert threads.ort_engine_cfg(None) == {"enable_cpu_mem_arena": True}
    assert threads.ort_engine_cfg(1) == {"enable_cpu_mem_arena": True, "intra_op_num_threads": 1}
    assert _rapid_params(1600, 2, 1, True)["EngineConfig.onnxruntime.enable_cpu_mem_arena"] is True
    for off in ("0", "false", "off", " No "):
        monkeypatch.setenv("IMGRAG_ORT_ARENA", off)
        assert threads.ort_engine_cfg(None) == {"enable_cpu_mem_arena": False}
    assert _rapid_params(1600, None, 1, True)["EngineConfig.onnxruntime.enable_cpu_mem_arena"] is False
    monkeypatch.setenv("IMGRAG_ORT_ARENA", "1")
    assert threads.arena_enabled()


def test_the_server_default_is_no_arena_and_the_variable_still_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    """`imgrag serve` turns the arena off where IMGRAG_ORT_ARENA is unset (a full-page ocr_region
    would keep ~0.3 GB for good); set, the variable wins either way."""
    from imgrag.indexing import threads

    monkeypatch.setattr(threads, "_ARENA_DEFAULT", True)
    monkeypatch.delenv("IMGRAG_ORT_ARENA", raising=False)
    threads.set_arena_default(False)
    assert threads.arena_enabled() is False
    assert threads.ort_engine_cfg(2) == {"enable_cpu_mem_arena": False, "intra_op_num_threads": 2}
    monkeypatch.setenv("IMGRAG_ORT_ARENA", "1")
    assert threads.arena_enabled() is True
    monkeypatch.setenv("IMGRAG_ORT_ARENA", " ")
    assert threads.arena_enabled() is False
    threads.set_arena_default(True)
    monkeypatch.setenv("IMGRAG_ORT_ARENA", "off")
    assert threads.arena_enabled() is False
