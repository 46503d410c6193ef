"""Sharded training is not supported yet: a process that `accelerate launch` started with an FSDP or DeepSpeed config
stops with one line before anything loads, instead of training with hooks on replaced tensors and saving rank 0's
shard as the adapter (grasp_bench.distributed.check_launch)."""

from __future__ import annotations

import pytest

from grasp_bench.artifacts import BadInput
from grasp_bench.pipeline import validate


@pytest.mark.parametrize(("variable", "name"), [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")])
def test_a_sharded_launch_is_refused_before_anything_loads(tiny_cfg, runs, monkeypatch, variable, name):
    cfg = tiny_cfg()
    monkeypatch.setenv(variable, "true")
    with pytest.raises(BadInput, match=rf"^{variable}=true: {name} sharding is not supported .* launch with torchrun"):
        validate(cfg)
    assert not runs.exists()


def test_a_plain_launch_passes(tiny_cfg, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    validate(tiny_cfg())
