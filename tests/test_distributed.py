"""Multi-process training through the Trainer's own DDP (gloo on CPU): 2 processes with a per-process batch of 2
train the same adapter as 1 process with a batch of 4, and only rank 0 writes the run directory. The 2 processes
come from torchrun, or from a submitit job with 2 tasks (what `hydra/launcher=slurm` does on a cluster)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from grasp_bench.artifacts import load_json, read_jsonl
from grasp_bench.method import Method
from grasp_bench.pipeline import run, run_dir
from tests.conftest import REPO, TINY, compose_config


class ReadsReference(Method):
    """Needs the naive SFT run, as GRASP does: every rank reads the reference adapter before it trains."""

    needs_reference = True

    def prepare(self, ctx):
        assert (ctx.reference_adapter / "adapter_model.safetensors").exists(), "reference not written yet"


READS_REFERENCE = f"method._target_={__name__}.ReadsReference method.name=reads_reference"
# One line per method: its overrides. A method's hooks must give the same weights under DDP.
CASES = [
    "method=sft",
    READS_REFERENCE,
    "method=grasp method.strength=1",  # residual-gradient hooks under DDP
    "method=grasp method.strength=1 method.projection=weights method.pooling=pooled",  # parameter re-projection
]


def adapter(d: Path) -> dict[str, torch.Tensor]:
    return load_file(d / "model" / "adapter_model.safetensors")


def launch(launcher: str, overrides: list[str], runs: Path) -> subprocess.CompletedProcess:
    """Train one run in 2 CPU processes: torchrun, or a submitit job with 2 tasks (the SLURM launcher's path)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")])}
    args = [*overrides, "train.batch_size=2", f"paths.runs={runs}"]
    if launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "grasp_bench", *args]
    else:
        cmd = [sys.executable, "-m", "grasp_bench", "-m", *[o for o in args if o != "sweep=none"],
               "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2", "hydra.launcher.timeout_min=15"]
    return subprocess.run(cmd, env=env, cwd=runs.parent, capture_output=True, text=True, timeout=900)


def check_same_training(overrides: list[str], launcher: str, tmp_path: Path) -> None:
    single_cfg = compose_config(*overrides, "train.batch_size=4", runs=tmp_path / "single")
    run(single_cfg)
    done = launch(launcher, overrides, tmp_path / "multi")
    assert done.returncode == 0, done.stderr[-3000:]

    two = run_dir(compose_config(*overrides, "train.batch_size=2", runs=tmp_path / "multi"))
    a, b = adapter(run_dir(single_cfg)), adapter(two)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-6), name
    moved = max(t.abs().max().item() for name, t in b.items() if "lora_B" in name)
    assert moved > 1e-5  # B starts at zero: training moved it by far more than the tolerance

    record = load_json(two / "stages" / "train.json")
    assert record["config"]["world_size"] == 2 and record["steps"] == 3
    assert len(read_jsonl(two / "train_log.jsonl")) == 3  # written once, by rank 0
    assert load_json(two / "metrics" / "rule.json")["eval/task_score_n"] == 6
    if launcher == "torchrun":
        assert done.stdout.count("[grasp-bench] ") == 1  # only rank 0 evaluates and reports


def tiny(overrides: str) -> list[str]:
    return [o for o in TINY if not o.startswith("train.batch_size=")] + overrides.split()


@pytest.mark.slow
@pytest.mark.parametrize("overrides", CASES)
def test_torchrun_trains_what_one_process_trains(overrides, tmp_path):
    check_same_training(tiny(overrides), "torchrun", tmp_path)


@pytest.mark.slow
def test_submitit_tasks_train_as_one_process_group(tmp_path):
    check_same_training(tiny("method=sft"), "submitit", tmp_path)
