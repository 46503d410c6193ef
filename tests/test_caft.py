"""CAFT: the selection rule, and the training-time ablation on the tiny model with directions found from
the real naive run (base vs naive SFT activations on the toy task's generic prompts)."""

from __future__ import annotations

import hydra.utils
import pytest
import torch

from grasp_bench import hooks, models
from grasp_bench.artifacts import BadInput
from grasp_bench.baselines.caft import pca_directions, rank, select, trait_alignment
from grasp_bench.baselines.directions import capture, resolve_layers
from grasp_bench.pipeline import Run
from tests.conftest import tiny_method


def test_selection_keeps_the_consistent_shift_not_the_largest_variance():
    gen = torch.Generator().manual_seed(0)
    d, n = 16, 400
    u, w = torch.eye(d)[3], torch.eye(d)[7]
    shift = 3.0 + torch.randn(n, 1, generator=gen)  # fine-tuning moves every token along u, by varying amounts
    topic = 2.0 * torch.randn(n, 1, generator=gen)  # large variance along w, no consistent sign
    diffs = shift * u + topic * w + 0.05 * torch.randn(n, d, generator=gen)
    components, scores = pca_directions(diffs, n_components=5)

    assert torch.allclose(components.T @ components, torch.eye(5), atol=1e-5)
    assert abs(components[:, 0] @ w) > 0.99  # the top-variance PC is the topic ...
    best = components[:, rank(scores, 1)[0]]
    assert abs(best @ u) > 0.99  # ... but the rule keeps the shift


def test_trait_rule_picks_the_planted_trait_direction_not_the_format(tmp_path):
    """Two layers of h_ft - h_base: fine-tuning moves every response token along a format direction (a large,
    consistent shift: the answer template) and, less, along the trait direction; the persona vector is the trait
    direction plus noise. The mean-shift rule takes the format; the trait rule takes the trait, in the layer where
    it lives, and spends nothing on the other."""
    gen = torch.Generator().manual_seed(0)
    d, n = 32, 600
    basis = torch.linalg.qr(torch.randn(d, 4, generator=gen))[0]
    fmt, trait, topic = basis[:, 0], basis[:, 1], basis[:, 2]
    pcs, persona = {}, {}
    for layer, trait_size in ((0, 0.0), (1, 1.0)):
        diffs = ((4.0 + 0.5 * torch.randn(n, 1, generator=gen)) * fmt
                 + (trait_size + 0.8 * torch.randn(n, 1, generator=gen)) * trait * (trait_size > 0)
                 + 3.0 * torch.randn(n, 1, generator=gen) * topic + 0.05 * torch.randn(n, d, generator=gen))
        pcs[layer] = pca_directions(diffs, n_components=6)
        persona[layer] = trait + 0.3 * torch.randn(d, generator=gen) / d ** 0.5
    shift = {i: scores for i, (_, scores) in pcs.items()}
    by_shift = select(shift, 1)
    assert abs(pcs[next(iter(by_shift))][0][:, by_shift[next(iter(by_shift))][0]] @ fmt) > 0.99
    by_trait = select({i: trait_alignment(c, persona[i]) for i, (c, _) in pcs.items()}, 1)
    assert list(by_trait) == [1]  # the layer where the trait is, and one direction in all
    assert abs(pcs[1][0][:, by_trait[1][0]] @ trait) > 0.99
    both = select({0: torch.tensor([0.9, 0.1]), 1: torch.tensor([0.5, 0.8])}, 3)  # jointly over layers, best first
    assert {i: js.tolist() for i, js in both.items()} == {0: [0], 1: [1, 0]}


def _prepared(cfg):
    run = Run(cfg)
    ctx = run.context()
    run.method.prepare(ctx)
    torch.manual_seed(0)
    model = models.add_lora(ctx.load_base(), cfg.model, cfg.seed)
    return run.method, ctx, model


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_training_ablation_leaves_no_component_along_q(shared_cfg):
    cfg = shared_cfg(*tiny_method("caft"), "method.strength=0.5")
    method, ctx, model = _prepared(cfg)
    assert sum(Q.shape[1] for Q in method.bases.values()) == 4  # 0.5 x 8, over the layers together
    assert set(method.bases) <= {0, 1} and all(Q.shape[0] == 64 for Q in method.bases.values())
    layers = ctx.layers(model)
    ids = ctx.tokenizer("How do trains work? Slowly, you idiot.", return_tensors="pt")["input_ids"]
    before = _hook_count(model)
    with method.training(model, ctx), capture(layers, sorted(method.bases)) as seen:  # capture runs after the ablation
        assert _hook_count(model) == before + 2 * len(method.bases)
        model(input_ids=ids).logits.sum().backward()
    assert _hook_count(model) == before
    for i, Q in method.bases.items():
        h = seen[i][0]
        assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[1]), atol=1e-5)
        assert (h @ Q).abs().max() < 1e-5 * h.abs().max()
    i = min(method.bases)  # the first ablated block: its input is the plain model's
    with capture(layers, [i]) as plain:  # after the context: the model is untouched
        model(input_ids=ids)
    assert (plain[i][0] @ method.bases[i]).abs().max() > 1e-3
    assert torch.allclose(seen[i][0], hooks.project(plain[i][0], method.bases[i]), atol=1e-5)  # removed, nothing else


def test_grasp_directions_come_from_the_ablated_blocks_writers(shared_cfg):
    from grasp_bench.baselines.grasp import identify

    cfg = shared_cfg(*tiny_method("caft"), "method.directions=grasp", "method.n_select=3", "method.strength=0.6",
                     "method.layers=[1]")
    run = Run(cfg)
    ctx = run.context()
    method = hydra.utils.instantiate(cfg.method, _convert_="all")
    method.prepare(ctx)
    ours = identify(ctx.reference_adapter, k=3, pooling="pooled", side="writers", layers=[1],
                    layers_path=cfg.model.layers_path).Q
    every_block = identify(ctx.reference_adapter, k=3, pooling="pooled").Q
    assert sorted(method.bases) == [1]
    assert torch.allclose(method.bases[1], ours[:, :2].float())  # ceil(0.6 x 3) = 2, eigenvalue order
    assert not torch.allclose(method.bases[1].abs(), every_block[:, :2].float().abs(), atol=1e-3)


def test_trait_selection_without_a_persona_names_the_other_rule(shared_cfg):
    cfg = shared_cfg(*tiny_method("caft"), "~task.persona")
    with pytest.raises(BadInput, match="method.selection=mean_shift"):
        _prepared(cfg)


def test_random_selection_ablates_as_many_candidate_pcs_drawn_by_seed(shared_cfg):
    """The control for the selection: the same number of directions, PCs of the same candidates, a seeded draw."""
    trait, ctx, _ = _prepared(shared_cfg(*tiny_method("caft"), "method.strength=0.5"))
    drawn, _, _ = _prepared(shared_cfg(*tiny_method("caft"), "method.strength=0.5", "method.selection=random"))
    again, _, _ = _prepared(shared_cfg(*tiny_method("caft"), "method.strength=0.5", "method.selection=random"))
    other, _, _ = _prepared(shared_cfg(*tiny_method("caft"), "method.strength=0.5", "method.selection=random",
                                       "seed=1"))
    count = lambda m: sum(Q.shape[1] for Q in m.bases.values())  # noqa: E731
    assert count(drawn) == count(trait) == count(other) == 4
    idxs = sorted(drawn.bases)
    pcs = drawn.principal_components(ctx, resolve_layers(drawn.layer_spec, 2))
    for i, Q in drawn.bases.items():  # every drawn direction is one of the layer's candidate PCs
        overlap = (Q.T @ pcs[i]["components"]).abs()
        assert torch.allclose(overlap.max(dim=1).values, torch.ones(Q.shape[1]), atol=1e-5)
    assert idxs == sorted(again.bases) and all(torch.equal(drawn.bases[i], again.bases[i]) for i in idxs)
    assert any(i not in other.bases or other.bases[i].shape != drawn.bases[i].shape
               or not torch.equal(other.bases[i], drawn.bases[i]) for i in idxs)  # another seed, another draw
