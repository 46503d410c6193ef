"""The Method contract (grasp_bench.contract), checked for every conf/method/*.yaml (a new method is covered by
adding its config), on both tiny models: SmolLM2's architecture (Llama) and the seed papers' (Qwen2: q/k/v biases,
untied head). `grasp-bench-check-method` runs the same checks on one method, a user's plugin included
(tests/test_plugins.py)."""

from __future__ import annotations

import pytest

from grasp_bench import contract
from tests.conftest import CONF, TINY_MODELS, tiny_method

METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
every_method_on_every_tiny_model = pytest.mark.parametrize(("model", "name"), [(m, n) for m in TINY_MODELS for n in METHODS])


@pytest.fixture
def model_cfg(shared_cfg, model):
    """Like `shared_cfg`, on the tiny model of the test's parameter."""
    return lambda *overrides: shared_cfg(f"model={model}", *overrides)


def check(what: str, model_cfg, name: str) -> None:
    skipped = contract.CHECKS[what](model_cfg, tiny_method(name))  # raises ContractBroken (an AssertionError)
    if skipped:
        pytest.skip(skipped)


@every_method_on_every_tiny_model
def test_strength_zero_reproduces_sft(model_cfg, name):
    check("strength 0 reproduces naive SFT", model_cfg, name)


@every_method_on_every_tiny_model
def test_no_hook_survives_its_context(model_cfg, name):
    check("no hook outlives its block", model_cfg, name)


@every_method_on_every_tiny_model
def test_strength_above_zero_changes_the_model(model_cfg, name):
    check("strength > 0 changes the model", model_cfg, name)


@pytest.mark.parametrize("model", ["tiny"])
def test_a_broken_method_is_caught(model_cfg, monkeypatch):
    """The checks fail a method that breaks the contract: GRASP whose projection leaks its hooks."""
    from contextlib import contextmanager

    from grasp_bench.baselines.grasp import GRASP

    @contextmanager
    def leaky(self, model, ctx):
        model.register_forward_hook(lambda *_: None)
        yield

    monkeypatch.setattr(GRASP, "training", leaky)
    with pytest.raises(contract.ContractBroken, match="keep a hook after `training`"):
        contract.no_hook_outlives_its_block(model_cfg, tiny_method("grasp"))

