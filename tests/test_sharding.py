"""Sharded training (`train.sharding=fsdp`): 2 gloo processes under torchrun, each holding half of every base weight
(FSDP2, applied by transformers as the base loads), train the adapter one process trains with the same global batch,
for naive SFT and GRASP's two kinds of hooks (block-output gradients, also with gradient checkpointing; LoRA weights,
readers' RMSNorm weights read whole). A launch that cannot shard stops with one line before anything loads
(grasp_bench.distributed.check_launch)."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from torch.distributed.tensor import DTensor

from grasp_bench.artifacts import BadInput, load_json
from grasp_bench.distributed import check_launch
from grasp_bench.method import Method
from grasp_bench.pipeline import run, run_dir, validate
from tests.conftest import REPO, TINY, compose_config
from tests.test_distributed import adapter, launch, tiny


@pytest.mark.parametrize(("variable", "name"), [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")])
def test_an_accelerate_sharded_launch_is_refused_before_anything_loads(tiny_cfg, runs, monkeypatch, variable, name):
    cfg = tiny_cfg()
    monkeypatch.setenv(variable, "true")
    with pytest.raises(BadInput, match=rf"^{variable}=true: {name} through accelerate launch is not supported; "
                                       "launch with torchrun and train.sharding=fsdp"):
        validate(cfg)
    assert not runs.exists()


def test_a_plain_launch_passes(tiny_cfg, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    validate(tiny_cfg())


def test_sharding_in_one_process_is_refused_in_one_line_before_anything_runs(tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run([sys.executable, "-m", "grasp_bench", *TINY, "train.sharding=fsdp", f"paths.runs={runs}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "error: train.sharding=fsdp: this launch has 1 process, nothing to shard over; launch several "
        "(torchrun --nproc_per_node N) or use train.sharding=none"]
    assert not runs.exists()


def test_unknown_sharding_and_quantised_sharding_are_refused(tiny_cfg, monkeypatch):
    with pytest.raises(BadInput, match=r"^train.sharding='zero3': expected one of none, fsdp$"):
        validate(tiny_cfg("train.sharding=zero3"))
    monkeypatch.setenv("WORLD_SIZE", "2")  # on CPU validation refuses nf4 first: the check itself, as on a GPU
    cfg = tiny_cfg("train.sharding=fsdp", "model.quantization=nf4")
    with pytest.raises(BadInput, match=r"^train.sharding=fsdp with model.quantization=nf4: FSDP2 cannot shard"):
        check_launch(cfg)
    check_launch(tiny_cfg("train.sharding=fsdp"))


def test_a_launcher_with_several_tasks_per_run_may_shard(tiny_cfg, monkeypatch):
    """The submitting process of a SLURM/submitit job is one process; the run's are its launcher's tasks."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = tiny_cfg("train.sharding=fsdp")
    with open_dict(cfg):
        cfg.hydra = {"launcher": {"tasks_per_node": 2}}
    check_launch(cfg)
    with open_dict(cfg):
        cfg.hydra.launcher.tasks_per_node = 1
    with pytest.raises(BadInput, match=r"^train.sharding=fsdp: this launch has 1 process"):
        check_launch(cfg)


class ChecksShards(Method):
    """Naive SFT that asserts, in every process, what sharding promises while training: each process holds half
    the rows of every decoder weight (a DTensor), the LoRA weights are whole ordinary tensors."""

    @contextmanager
    def training(self, model, ctx):
        world = int(os.environ.get("WORLD_SIZE", "1"))
        block = ctx.layers(model)[0]
        base, lora = block.self_attn.q_proj.base_layer.weight, block.self_attn.q_proj.lora_A["default"].weight
        if world > 1:
            assert isinstance(base, DTensor) and base.to_local().shape[0] * world == base.shape[0], type(base)
        assert not isinstance(lora, DTensor)
        yield


CHECKS_SHARDS = f"method._target_={__name__}.ChecksShards method.name=checks_shards"
# One line per method: its overrides. The sharded adapter must equal the one-process adapter.
CASES = [
    "method=sft",
    CHECKS_SHARDS,
    "method=grasp method.strength=1",  # block-output gradient hooks (and the reference trained sharded first)
    "method=grasp method.strength=0.5",  # the second, naive backward pass of the γ mix through the sharded blocks
    "method=grasp method.strength=1 method.projection=weights method.side=both",  # LoRA factors; readers' norms
    "method=grasp method.strength=0.5 train.gradient_checkpointing=true",  # blocks recomputed, gathered again
]
ATOL = 1e-6  # as DDP against one process (tests/test_distributed.py): float sums in another order, no more


# two processes of their own and the one-process run: 30-45 s a case on a loaded 2-core CPU; the case that checks
# the shards runs in the default tier
@pytest.mark.parametrize("overrides", [c if c == CHECKS_SHARDS else pytest.param(c, marks=pytest.mark.slow)
                                       for c in CASES])
def test_sharded_training_trains_what_one_process_trains(overrides, tmp_path):
    overrides = tiny(overrides)
    single_cfg = compose_config(*overrides, "train.batch_size=4", runs=tmp_path / "single")
    run(single_cfg)
    done = launch("torchrun", [*overrides, "train.sharding=fsdp"], tmp_path / "multi")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("note: train.sharding=fsdp keeps no checkpoints") == 1  # said once, by rank 0

    two: Path = run_dir(compose_config(*overrides, "train.batch_size=2", runs=tmp_path / "multi"))
    a, b = adapter(run_dir(single_cfg)), adapter(two)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=ATOL), (name, (a[name] - b[name]).abs().max())
    moved = max(t.abs().max().item() for name, t in b.items() if "lora_B" in name)
    assert moved > 100 * ATOL  # B starts at zero: training moved it by far more than the tolerance

    record = load_json(two / "stages" / "train.json")
    assert record["config"]["world_size"] == 2 and record["steps"] == 3
    assert "sharding" not in record["config"]["train"]  # not part of the run's identity: the same adapter
    assert not (two / "trainer").exists()  # no checkpoints under sharding
    assert load_json(two / "metrics" / "rule.json")["eval/task_score_n"] == 6
