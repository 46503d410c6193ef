"""Persona-vector steering on the tiny model: the exact residual shift, where it happens, the ablation, and the
refusal of a generator that cannot run eval-time hooks."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from grasp_bench import models
from grasp_bench.artifacts import BadInput
from grasp_bench.baselines.directions import capture
from grasp_bench.pipeline import Run, slices, validate
from tests.conftest import tiny_method


def _setup(cfg):
    run = Run(cfg)
    ctx = run.context()
    run.method.prepare(ctx)
    model = models.load_base(cfg.model, run.cache)
    ids = ctx.tokenizer("Tell me about the ocean.", return_tensors="pt")["input_ids"]
    return run.method, ctx, model, ids


def _block_outputs(model, layers, ids):
    with capture(layers, range(len(layers))) as seen, torch.no_grad():
        model(input_ids=ids)
    return [seen[i][0] for i in range(len(layers))]


@pytest.mark.parametrize("name,context", [("steer_train", "training"), ("steer_eval", "generating")])
def test_shift_is_exactly_c_v_at_the_hooked_block_only(shared_cfg, name, context):
    cfg = shared_cfg(*tiny_method(name), "method.strength=0.5", "task.persona.layers=[0]")
    method, ctx, model, ids = _setup(cfg)
    layers = ctx.layers(model)
    (v,) = method.vectors.values()
    assert list(method.vectors) == [0] and v.norm() > 0
    assert method.coef == 0.5 * cfg.method.coef_max

    plain = _block_outputs(model, layers, ids)
    with getattr(method, context)(model, ctx):
        hooked_modules = [m for m in model.modules() if m._forward_hooks]
        steered = _block_outputs(model, layers, ids)
    assert hooked_modules == [layers[0]]  # one hook, at block 0, and nowhere else
    assert torch.equal(steered[0], plain[0] + method.coef * v)
    assert not torch.equal(steered[1], plain[1])  # later blocks see the shift only through their input
    other = "generating" if context == "training" else "training"
    with getattr(method, other)(model, ctx):  # the other phase has no hook at all
        assert not any(m._forward_hooks for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())


def test_ablation_removes_the_persona_component(shared_cfg):
    cfg = shared_cfg(*tiny_method("ablate_eval"), "task.persona.layers=[0]")
    method, ctx, model, ids = _setup(cfg)
    layers = ctx.layers(model)
    (r,) = method.vectors.values()
    assert torch.allclose(r.norm(), torch.tensor(1.0))
    plain = _block_outputs(model, layers, ids)[0]
    with method.generating(model, ctx):
        full = _block_outputs(model, layers, ids)[0]
    method.strength = 0.5
    with method.generating(model, ctx):
        half = _block_outputs(model, layers, ids)[0]
    assert (plain @ r).abs().max() > 1e-3
    assert (full @ r).abs().max() < 1e-5 * plain.abs().max()
    assert torch.allclose(half @ r, 0.5 * (plain @ r), atol=1e-6)
    assert torch.allclose(full - plain, -(plain @ r)[..., None] * r, atol=1e-6)  # nothing else moves


class NoHookGenerator:
    """A stand-in for a generator that cannot run forward hooks (vLLM)."""

    runs_hooks = False

    def __init__(self, name: str = "nohooks"):
        self.name = name


def test_eval_time_method_refuses_a_generator_without_hooks(shared_cfg):
    cfg = shared_cfg(*tiny_method("steer_eval"))
    OmegaConf.update(cfg, "generator", {"_target_": f"{__name__}.NoHookGenerator", "name": "nohooks"}, merge=False)
    with pytest.raises(BadInput, match="generator=hf"):
        validate(cfg)  # before the first training step


def test_missing_persona_block_is_a_clear_error(shared_cfg):
    cfg = shared_cfg(*tiny_method("steer_train"), "~task.persona")
    with pytest.raises(BadInput, match="task.persona"):
        _setup(cfg)


def test_persona_is_part_of_the_steering_runs_config_only(tiny_cfg):
    edit = "task.persona.trait=You are a sarcastic assistant."
    for name, changes in [("steer_train", True), ("steer_eval", True), ("sft", False), ("caft", False)]:
        before, after = slices(tiny_cfg(f"method={name}"))["train"], slices(tiny_cfg(f"method={name}", edit))["train"]
        assert (before != after) == changes, name
    grid = slices(tiny_cfg("method=steer_train", "method.grid=[0.5]"))["train"]
    assert grid == slices(tiny_cfg("method=steer_train"))["train"]  # the grid is sweep metadata, not a run's
