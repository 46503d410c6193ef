"""The Method contract, checked for every conf/method/*.yaml (a new method is covered by adding its config):

- strength 0 reproduces the naive SFT run: the same saved tensors (methods that change weights), or the same
  greedy generations (methods that act at generation time);
- no forward/backward hook survives the `training` or `generating` context;
- strength > 0 changes the model: its weights, or for eval-time methods its outputs under `generating`.
Each on both tiny models: SmolLM2's architecture (Llama) and the seed papers' (Qwen2: q/k/v biases, untied head).
"""

from __future__ import annotations

from pathlib import Path

import hydra.utils
import pytest
import torch
from safetensors.torch import load_file

from grasp_bench import models
from grasp_bench.artifacts import read_jsonl
from grasp_bench.pipeline import Run, ensure_reference, run
from tests.conftest import CONF, TINY, TINY_MODELS, compose_config, tiny_method

METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
every_method_on_every_tiny_model = pytest.mark.parametrize(("model", "name"), [(m, n) for m in TINY_MODELS for n in METHODS])
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _method(name: str):
    return hydra.utils.instantiate(compose_config(*TINY, *tiny_method(name)).method, _convert_="all")


def _skip_unless_fine_tune(name: str) -> None:
    method = _method(name)
    if method.starts_from == "untrained":
        pytest.skip(f"{name} evaluates the base model as it is")
    if name == "sft":
        pytest.skip("sft is the naive run itself")


def _saved_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(f))
    assert tensors, f"no tensors saved in {model_dir}"
    return tensors


def _effective_weights(r: Run) -> dict[str, torch.Tensor]:
    model = r.weights()
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def model_cfg(shared_cfg, model):
    """Like `shared_cfg`, on the tiny model of the test's parameter."""
    return lambda *overrides: shared_cfg(f"model={model}", *overrides)


@every_method_on_every_tiny_model
def test_strength_zero_reproduces_sft(model_cfg, name):
    _skip_unless_fine_tune(name)
    reference = ensure_reference(model_cfg("method=sft"))
    if _method(name).intervenes_at_eval:
        stages = "stages=[train,generate]"
        run(model_cfg("method=sft", stages))
        cfg = model_cfg(*tiny_method(name), "method.strength=0", stages)
        run(cfg)
        ours = {(g["id"], g["sample"]): g["completion"] for g in read_jsonl(Run(cfg).dir / "generations.jsonl")}
        naive = {(g["id"], g["sample"]): g["completion"] for g in read_jsonl(reference / "generations.jsonl")}
        assert ours == naive
    else:
        cfg = model_cfg(*tiny_method(name), "method.strength=0", "stages=[train]")
        run(cfg)
        ours, naive = _saved_tensors(Run(cfg).dir / "model"), _saved_tensors(reference / "model")
        assert ours.keys() == naive.keys()
        assert all(torch.equal(ours[k], naive[k]) for k in naive)


@every_method_on_every_tiny_model
def test_no_hook_survives_its_context(model_cfg, name):
    cfg = model_cfg(*tiny_method(name), *(["method.strength=1.0"] if _method(name).grid else []))
    r = Run(cfg)
    ctx = r.context()
    r.prepare(ctx)
    model = models.add_lora(ctx.load_base(), cfg.model, cfg.seed)
    ids = ctx.tokenizer("What are clouds made of?", return_tensors="pt")["input_ids"]

    def counts():
        return {n: tuple(len(getattr(m, d)) for d in HOOK_DICTS) for n, m in model.named_modules()}

    before = counts()
    with r.method.training(model, ctx):
        model(input_ids=ids, labels=ids).loss.backward()
    assert counts() == before
    with r.method.generating(model, ctx), torch.no_grad():
        model.generate(input_ids=ids, max_new_tokens=2, do_sample=False, pad_token_id=ctx.tokenizer.pad_token_id)
    assert counts() == before


@every_method_on_every_tiny_model
def test_strength_above_zero_changes_the_model(model_cfg, name):
    _skip_unless_fine_tune(name)
    cfg = model_cfg(*tiny_method(name), "method.strength=1.0", "stages=[train]")
    run(cfg)
    r = Run(cfg)
    naive = Run(model_cfg("method=sft"))
    if r.method.intervenes_at_eval:  # the weights are the naive ones; the outputs under its hooks are not
        ours, theirs = _saved_tensors(r.dir / "model"), _saved_tensors(naive.dir / "model")
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)
        model, ctx = r.weights(), r.context()
        r.prepare(ctx)
        ids = ctx.tokenizer("What are clouds made of?", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            plain = model(input_ids=ids).logits
            with r.method.generating(model, ctx):
                hooked = model(input_ids=ids).logits
        assert not torch.allclose(plain, hooked)
    else:
        ours, theirs = _effective_weights(r), _effective_weights(naive)
        assert ours.keys() == theirs.keys()
        assert any(not torch.equal(ours[k], theirs[k]) for k in theirs)
