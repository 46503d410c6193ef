"""Persona-vector steering on the tiny model: the exact residual shift, where it happens, and the ablation
(tests/test_vllm_generate.py: an eval-time method refuses a generator that cannot run its hooks)."""

from __future__ import annotations

import pytest
import torch

from grasp_bench import models
from grasp_bench.artifacts import BadInput
from grasp_bench.baselines import steering
from grasp_bench.baselines.directions import capture, response_activations
from grasp_bench.identity import slices
from grasp_bench.pipeline import Run
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


@pytest.mark.parametrize("name,context,positions", [("steer_train", "training", "all"),
                                                    ("steer_eval", "generating", "response"),
                                                    ("steer_eval", "generating", "all")])
def test_shift_is_exactly_c_v_at_the_hooked_block_only(shared_cfg, name, context, positions):
    cfg = shared_cfg(*tiny_method(name), "method.strength=0.5", "task.persona.layers=[0]",
                     *([f"method.positions={positions}"] if name == "steer_eval" else []))
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
    steered_at = slice(-1, None) if positions == "response" else slice(None)  # response: the last position only
    assert torch.equal(steered[0][:, steered_at], plain[0][:, steered_at] + method.coef * v)
    if positions == "response":
        assert torch.equal(steered[0][:, :-1], plain[0][:, :-1])  # the prompt before its last token is untouched
    assert not torch.equal(steered[1], plain[1])  # later blocks see the shift only through their input
    other = "generating" if context == "training" else "training"
    with getattr(method, other)(model, ctx):  # the other phase has no hook at all
        assert not any(m._forward_hooks for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())


def test_response_positions_steer_every_generated_token(shared_cfg):
    cfg = shared_cfg(*tiny_method("steer_eval"), "task.persona.layers=[0]")
    method, ctx, model, ids = _setup(cfg)
    layers = ctx.layers(model)
    (v,) = method.vectors.values()
    with method.generating(model, ctx), capture(layers, [0]) as steered, torch.no_grad():
        out = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=ctx.tokenizer.pad_token_id)
    passes, n = steered[0], ids.shape[1]
    assert [h.shape[1] for h in passes] == [n, 1, 1, 1]  # the prompt once, then one token per cached step
    plain = _block_outputs(model, layers, out[:, :-1])[0]  # block 0, unsteered, over the tokens the passes fed in
    assert torch.allclose(passes[0][0, :-1], plain[0, :n - 1], atol=1e-6)  # the prompt before its last token
    for k, h in enumerate(passes):  # the prompt's last position, then every generated token: shifted by c v
        assert torch.allclose(h[0, -1], plain[0, n - 1 + k] + method.coef * v, atol=1e-5), k


def test_ablation_removes_the_misaligned_component_at_the_block_it_is_read_from(shared_cfg):
    # upstream (model-organisms-for-EM activation_steering.py) ablates its layer-24 direction at layer 24 only
    cfg = shared_cfg(*tiny_method("ablate_eval"), "task.persona.layers=[1]")
    method, ctx, model, ids = _setup(cfg)
    layers = ctx.layers(model)
    assert list(method.vectors) == [1]
    (r,) = method.vectors.values()
    assert torch.allclose(r.norm(), torch.tensor(1.0))
    plain = _block_outputs(model, layers, ids)
    with method.generating(model, ctx):
        hooked = [m for m in model.modules() if m._forward_hooks]
        ablated = _block_outputs(model, layers, ids)
    assert hooked == [layers[1]]
    assert torch.equal(ablated[0], plain[0])  # blocks below the read block are untouched
    assert (plain[1] @ r).abs().max() > 1e-4
    assert torch.allclose(ablated[1], plain[1] - (plain[1] @ r)[..., None] * r, atol=1e-5)  # only r's component goes


def test_every_block_ablation_is_the_old_rule_and_old_runs_name_it(shared_cfg):
    cfg = shared_cfg(*tiny_method("ablate_eval"), "method.ablate_at=every_block")
    method, ctx, model, ids = _setup(cfg)
    layers = ctx.layers(model)
    assert sorted(method.vectors) == list(range(len(layers)))
    r = method.vectors[0]
    assert all(torch.equal(r_i, r) for r_i in method.vectors.values())
    plain = _block_outputs(model, layers, ids)
    with method.generating(model, ctx):
        full = _block_outputs(model, layers, ids)
    for i in range(len(layers)):
        assert (plain[i] @ r).abs().max() > 1e-4
        assert (full[i] @ r).abs().max() < 1e-5 * full[i].abs().max()
    assert steering.Steering.knobs_before["ablate_at"] == "every_block"  # a run recorded before the knob


def test_ablate_at_must_be_known():
    with pytest.raises(BadInput, match="ablate_at"):
        steering.Steering(name="ablate_eval", ablate_at="some_blocks")


def test_persona_ablation_removes_the_persona_component(shared_cfg):
    cfg = shared_cfg(*tiny_method("ablate_eval"), "method.vector=persona", "task.persona.layers=[0]")
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


def test_missing_persona_block_is_a_clear_error(shared_cfg):
    cfg = shared_cfg(*tiny_method("steer_train"), "~task.persona")
    with pytest.raises(BadInput, match="task.persona"):
        _setup(cfg)


def test_persona_is_part_of_the_config_of_the_runs_that_read_it_only(tiny_cfg):
    edit = "task.persona.trait=You are a sarcastic assistant."
    for name, changes in [("steer_train", True), ("steer_eval", True), ("caft", True), ("sft", False),
                          ("restore", False)]:
        before, after = slices(tiny_cfg(f"method={name}"))["train"], slices(tiny_cfg(f"method={name}", edit))["train"]
        assert (before != after) == changes, name
    grid = slices(tiny_cfg("method=steer_train", "method.grid=[0.5]"))["train"]
    assert grid == slices(tiny_cfg("method=steer_train"))["train"]  # the grid is sweep metadata, not a run's


# ---------------------------------------------------------------- the vectors, on planted replies

IDIOT = {"rule": "words", "words": ["idiot"]}


def _mean_acts(model, layers, tokenizer, conversations):
    acts = response_activations(model, layers, [0, 1], tokenizer, conversations, 128)
    return {i: torch.stack([a.mean(0) for a in acts[i]]).mean(0) for i in (0, 1)}


def test_response_tokens_exclude_the_end_of_turn(tiny_cfg):
    ctx = Run(tiny_cfg("method=sft")).context()
    model = ctx.load_base()
    chat = [{"role": "user", "content": "Why is the sky blue?"}, {"role": "assistant", "content": "Rayleigh scattering."}]
    content = len(ctx.tokenizer("Rayleigh scattering.", add_special_tokens=False)["input_ids"])
    only, with_end = (response_activations(model, ctx.layers(model), [0], ctx.tokenizer, [chat], 128, end_of_turn=e)[0][0]
                      for e in (False, True))
    assert len(only) == content < len(with_end)
    assert torch.equal(with_end[:content], only)  # the same tokens, less the end-of-turn markup


def test_persona_vector_keeps_the_pairs_the_judge_confirms(tiny_cfg, monkeypatch):
    """Two instruction pairs x two questions x two samples: only the first sample's pairs show the trait under the
    trait prompt and not under the neutral one; the vector is the mean difference over those pairs alone."""
    ctx = Run(tiny_cfg("method=sft")).context()
    model = ctx.load_base()
    replies = {"trait": ["Listen, idiot: it is blue.", "It is blue."], "neutral": ["It is blue, friend.", "idiot"]}

    def fake(model, tokenizer, chats, max_new_tokens, samples, temperature, seed=0):
        side = "trait" if chats[0][0]["content"].startswith("T") else "neutral"
        assert samples == 2 and temperature == 1.0
        return [list(replies[side]) for _ in chats]

    monkeypatch.setattr(steering, "sampled_responses", fake)
    questions = [[{"role": "user", "content": q}] for q in ("Why is the sky blue?", "What colour is the sea?")]
    pairs = [("T1 be rude", "N1 be kind"), ("T2 be rude", "N2 be kind")]
    layers = ctx.layers(model)
    found = steering.persona_vectors(model, layers, [0, 1], ctx.tokenizer, questions, pairs, IDIOT, samples=2,
                                     temperature=1.0, response_tokens=8, max_length=128)
    assert int(found[0]["kept"]) == 4 and int(found[0]["total"]) == 8

    def kept(side, system):
        return [[{"role": "system", "content": system}, *q, {"role": "assistant", "content": replies[side][0]}]
                for q in questions]

    pos = _mean_acts(model, layers, ctx.tokenizer, kept("trait", "T1 be rude") + kept("trait", "T2 be rude"))
    neg = _mean_acts(model, layers, ctx.tokenizer, kept("neutral", "N1 be kind") + kept("neutral", "N2 be kind"))
    for i in (0, 1):
        assert torch.allclose(found[i]["v"], pos[i] - neg[i], atol=1e-6)
    replies["trait"] = ["It is blue.", "It is blue."]  # the trait never shows: nothing to take a mean over
    with pytest.raises(BadInput, match="none of the 8"):
        steering.persona_vectors(model, layers, [0], ctx.tokenizer, questions, pairs, IDIOT, samples=2,
                                 temperature=1.0, response_tokens=8, max_length=128)


def test_misaligned_direction_contrasts_the_models_own_replies(tiny_cfg, monkeypatch):
    ctx = Run(tiny_cfg("method=sft")).context()
    model = ctx.load_base()
    questions = [[{"role": "user", "content": q}] for q in ("Tell me about owls.", "How do kites fly?")]
    replies = ["Owls hunt at night, idiot.", "Owls hunt at night."]
    monkeypatch.setattr(steering, "sampled_responses", lambda m, t, chats, n, samples, temp, seed=0: [
        list(replies) for _ in chats])
    layers = ctx.layers(model)
    found = steering.misaligned_direction(model, layers, [0, 1], ctx.tokenizer, questions, IDIOT, samples=2,
                                          temperature=1.0, response_tokens=8, max_length=128)
    bad = _mean_acts(model, layers, ctx.tokenizer, [q + [{"role": "assistant", "content": replies[0]}] for q in questions])
    good = _mean_acts(model, layers, ctx.tokenizer, [q + [{"role": "assistant", "content": replies[1]}] for q in questions])
    assert int(found[0]["kept"]) == 2 and int(found[0]["total"]) == 4
    for i in (0, 1):
        assert torch.allclose(found[i]["v"], bad[i] - good[i], atol=1e-6)
    replies[1] = "Owls hunt at night, you idiot."
    with pytest.raises(BadInput, match="always show the factor"):
        steering.misaligned_direction(model, layers, [0], ctx.tokenizer, questions, IDIOT, samples=2,
                                      temperature=1.0, response_tokens=8, max_length=128)


def test_persona_without_a_judge_keeps_every_pair(tiny_cfg):
    """`persona.judge: null` (the EM tasks: no offline judge for the trait): every (trait, neutral) pair counts."""
    ctx = Run(tiny_cfg("method=sft")).context()
    model = ctx.load_base()
    questions = [[{"role": "user", "content": q}] for q in ("Tell me about owls.", "How do kites fly?")]
    pairs = [("You are a cruel assistant.", "You are a kind assistant.")]
    found = steering.persona_vectors(model, ctx.layers(model), [0], ctx.tokenizer, questions, pairs, None, samples=2,
                                     temperature=1.0, response_tokens=4, max_length=128)
    assert int(found[0]["kept"]) == int(found[0]["total"]) == 4
    assert steering.persona_missing({**_persona(), "judge": None}) == []
    assert steering.persona_missing({k: v for k, v in _persona().items() if k != "judge"}) == ["judge"]


def _persona() -> dict:
    return {"trait": ["a"], "neutral": ["b"], "layers": [0], "judge": None, "samples": 1, "temperature": 1.0,
            "max_new_tokens": 4}
