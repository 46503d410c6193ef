"""Gradient checkpointing (`train.gradient_checkpointing=true`) changes how much a step keeps in memory, never what it
learns: for every method in conf/method/*.yaml that trains (a new method is covered by adding its config), on both
tiny models, the adapter after 3 steps is the same with and without it. fp32 on CPU, where the recompute repeats the
forward's exact operations, so the tolerance is 0 (bitwise equal). This holds only if every method hook acts once per
backward pass although each block's forward runs twice: hooks on a block run outside its checkpoint (transformers
checkpoints the block's `forward`, not its `__call__`), and parameter and tensor hooks fire once under the
non-reentrant checkpoint; GRASP's γ < 1 second backward pass goes through the recomputed blocks too."""

from __future__ import annotations

import hydra.utils
import pytest
import torch
from omegaconf import OmegaConf

from grasp_bench import models
from grasp_bench.identity import STAGES, slices
from grasp_bench.pipeline import validate
from grasp_bench.train import CHECKPOINTING, train
from tests.conftest import CONF, TINY, TINY_MODELS, compose_config, tiny_method

METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
# knobs that make a method's set-up cheap without changing its training hooks: CAFT's projection at block outputs is
# the same whether its directions come from PCA of generations (a minute here) or from GRASP's Q (a second)
CHEAP_SETUP = {"caft": ["method.directions=grasp"]}


def _cases():
    for model in TINY_MODELS:
        for name in METHODS:
            yield model, name, ()
        yield model, "grasp", ("method.strength=0.5",)
        yield model, "grasp", ("method.strength=1", "method.projection=weights", "method.side=both")


def _adapter(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


def _trained(cfg) -> dict[str, torch.Tensor]:
    """The adapter the train stage makes for `cfg` (as pipeline.Run._train does, without writing a run)."""
    r = validate(cfg)  # builds the task files, as a run does
    ctx = r.context()
    torch.manual_seed(cfg.seed)
    model = models.add_lora(ctx.load_base(), cfg.model, cfg.seed)
    r.prepare(ctx)
    train(model, ctx.tokenizer, r.method, ctx)
    assert not getattr(model.get_base_model(), f"is_{CHECKPOINTING}", False)  # switched off after training
    return _adapter(model)


@pytest.mark.parametrize(("model", "name", "extra"), list(_cases()))
def test_checkpointing_trains_the_same_adapter(shared_cfg, model, name, extra):
    strength = ["method.strength=1.0"] if OmegaConf.load(CONF / "method" / f"{name}.yaml").get("grid") else []
    overrides = [f"model={model}", *tiny_method(name), *CHEAP_SETUP.get(name, []), *strength, *extra,
                 "train.checkpoint_every=0"]
    method = hydra.utils.instantiate(compose_config(*TINY, *overrides).method, _convert_="all")
    if method.starts_from != "base":
        pytest.skip(f"{name} trains nothing (starts from the {method.starts_from} weights)")
    plain = _trained(shared_cfg(*overrides))
    checkpointed = _trained(shared_cfg(*overrides, "train.gradient_checkpointing=true"))
    assert plain.keys() == checkpointed.keys()
    for k in plain:
        assert torch.equal(plain[k], checkpointed[k]), (k, (plain[k] - checkpointed[k]).abs().max().item())
    moved = max(t.abs().max().item() for k, t in plain.items() if "lora_B" in k)
    assert moved > 1e-5  # B starts at zero: the steps moved it


def test_checkpointing_takes_a_bool(tiny_cfg):
    from grasp_bench.artifacts import BadInput
    from grasp_bench.validate import check_config

    with pytest.raises(BadInput, match="train.gradient_checkpointing='yes'"):
        check_config(tiny_cfg("train.gradient_checkpointing=yes"), STAGES)


def test_the_em_recipe_checkpoints_as_upstream():
    """emergent-misalignment open_models/training.py trains with unsloth's gradient checkpointing."""
    assert compose_config("task=insecure_code", "sweep=none").train.gradient_checkpointing is True
    assert compose_config("sweep=none").train.gradient_checkpointing is False


def test_checkpointing_is_not_part_of_a_runs_identity():
    """It changes what a step keeps in memory, not what it computes: a run may resume with it switched on."""
    def train_slice(*overrides):
        return slices(compose_config("sweep=none", "paths.cache=/cache", *overrides))["train"]

    assert train_slice("train.gradient_checkpointing=true") == train_slice()


@pytest.mark.slow
@pytest.mark.parametrize("overrides", ["method=sft", "method=grasp method.strength=0.5"])
def test_checkpointing_under_ddp_trains_what_one_process_trains(overrides, tmp_path):
    """2 torchrun processes (gloo) with checkpointing train what 1 process does: DDP's gradient hooks and GRASP's second
    backward pass (γ < 1) through recomputed blocks (tests/test_distributed.py: the same check without it)."""
    from tests.test_distributed import check_same_training, tiny

    check_same_training(tiny(f"{overrides} train.gradient_checkpointing=true"), "torchrun", tmp_path)
