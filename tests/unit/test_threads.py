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
