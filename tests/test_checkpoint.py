"""Checkpoints inside training: a run killed (SIGKILL) after a checkpoint resumes it through the Trainer's own
`resume_from_checkpoint` and ends with the adapter an uninterrupted run makes; checkpoints go when the stage is
done; a checkpoint made with another train config is never resumed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from grasp_bench.artifacts import read_jsonl, write_json
from grasp_bench.pipeline import run, run_dir
from grasp_bench.train import CHECKPOINTS, complete, resume_point
from tests.conftest import REPO, TINY, compose_config

STEPS = ["train.max_steps=8", "train.checkpoint_every=2", "stages=[train]"]  # 4 checkpoints, the last one kept


def adapter(d) -> dict[str, torch.Tensor]:
    return load_file(d / "model" / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """method -> the config of its run, trained without interruption (in this process)."""
    runs = tmp_path_factory.mktemp("whole") / "runs"
    cfgs = {m: compose_config(*TINY, *STEPS, f"method={m}", runs=runs) for m in ("sft", "grasp", "kl")}
    for cfg in cfgs.values():
        run(cfg)
    return cfgs


# grasp: Q and diagnostics from prepare(), per-step logs; kl: a term on generic batches drawn per step
@pytest.mark.parametrize("method", ["sft", "grasp", "kl"])
def test_killed_training_resumes_to_the_same_adapter(tmp_path, uninterrupted, method, capfd):
    runs = tmp_path / "runs"
    whole = run_dir(uninterrupted[method])
    if method == "grasp":  # the naive reference run it reads, as the uninterrupted run had it
        ref = run_dir(uninterrupted["sft"])
        shutil.copytree(ref, runs / ref.relative_to(uninterrupted["sft"].paths.runs))
    cfg = compose_config(*TINY, *STEPS, f"method={method}", runs=runs)
    d = run_dir(cfg)
    proc = subprocess.Popen([sys.executable, "-m", "grasp_bench", *TINY, *STEPS, f"method={method}",
                             f"paths.runs={runs}"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + 300
    while not complete(d / CHECKPOINTS / "checkpoint-2"):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (d / "stages" / "train.json").exists(), "killed too late: training had finished"

    run(cfg)  # the same command again
    assert f"resuming {d} from checkpoint-" in capfd.readouterr().err
    a, b = adapter(whole), adapter(d)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    # the same batches in the same order after the resume: every step's loss (and GRASP's diagnostic) agrees
    log, ref_log = read_jsonl(d / "train_log.jsonl"), read_jsonl(whole / "train_log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 9))
    for x, y in zip(log, ref_log, strict=True):
        assert set(x) == set(y) and all(x[k] == pytest.approx(y[k], abs=1e-6) for k in x)
    if method in ("grasp", "kl"):
        assert {"grasp": "grasp/max_qtb_norm", "kl": "kl/kl"}[method] in log[0]
    assert not (d / CHECKPOINTS).exists() and not (whole / CHECKPOINTS).exists()


def test_a_checkpoint_of_another_train_config_is_never_resumed(tmp_path):
    out = tmp_path / CHECKPOINTS
    write_json(out / "slice.json", {"digest": "aaaa"})
    write_json(out / "checkpoint-3" / "trainer_state.json", {})
    (out / "checkpoint-6").mkdir()  # killed while saving: no trainer_state.json yet...
    (out / "checkpoint-9").mkdir()
    (out / "checkpoint-9" / "trainer_state.json").write_text('{"global_st')  # ...or a torn one
    assert resume_point(out, "aaaa") == str(out / "checkpoint-3")
    assert resume_point(out, "bbbb") is None
    assert sorted(p.name for p in out.iterdir()) == ["slice.json"]
