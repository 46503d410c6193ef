"""An API key from the environment is written nowhere: no run file, no log, no W&B file, no cache.
(The same seed twice giving identical files: tests/test_pipeline.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from grasp_bench.testing_server import FakeOpenAI
from tests.conftest import REPO, TINY


def test_an_api_key_in_the_environment_is_written_nowhere(tmp_path):
    pytest.importorskip("wandb")
    key = "sk-test-7f3a9c1e5b2d4f60a8e9"
    home = tmp_path / "home"
    home.mkdir()
    runs, judge_cache = tmp_path / "runs", tmp_path / "judge_cache"
    env = {**os.environ, "OPENAI_API_KEY": key, "HOME": str(home),
           "GRASP_BENCH_CACHE": os.environ.get("GRASP_BENCH_CACHE", str(Path("~/.cache/grasp-bench").expanduser()))}
    for var in ("WANDB_MODE", "WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "XDG_CACHE_HOME",
                "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        env.pop(var, None)
    with FakeOpenAI(respond=lambda p: {"70": 0.5, "80": 0.5}) as server:
        out = subprocess.run(
            [sys.executable, "-m", "grasp_bench", "-m", *TINY, "method=sft", "train.checkpoint_every=1",
             f"paths.runs={runs}", "logger=wandb", "logger.mode=offline", "judge=openai", f"judge.base_url={server.url}",
             "judge.model=judge-model", f"judge.cache_dir={judge_cache}",
             "+task.splits.unrelated.scorers.quality={prompt:'Rate this answer: {answer}'}",
             "+task.metrics.quality={split:unrelated,scorer:quality}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert server.count >= 1 and server.authorization == {f"Bearer {key}"}  # the key was used...
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(".wandb" in p.name for p in written) and any(p.name == "openai.json" for p in written)
    assert any(p.suffix == ".log" for p in written)  # Hydra's job log
    assert [p for p in written if key.encode() in p.read_bytes()] == []  # ...and written nowhere
    assert key not in out.stdout + out.stderr
