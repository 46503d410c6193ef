"""GRASP (baselines/grasp.py): identification from real peft adapters with planted directions, the
projection operators, and the Method through the real pipeline on the tiny model."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from grasp_bench import models
from grasp_bench.artifacts import BadInput, load_json, read_jsonl
from grasp_bench.baselines.grasp import GRASP, Identification, identify, load_factors, project_columns, project_rows, top_eigen
from grasp_bench.method import RunContext
from grasp_bench.pipeline import diagnostics as pipeline_diagnostics
from grasp_bench.pipeline import ensure_reference, instantiate, run, run_dir
from tests.conftest import TINY, compose_config

WRITERS, READERS = ("o_proj", "down_proj"), ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")


def grasp(strength: float = 1.0, **knobs) -> GRASP:
    """GRASP built the way `method=grasp` builds it: conf/method/grasp.yaml, the given knobs overridden."""
    from omegaconf import OmegaConf

    return instantiate(OmegaConf.merge(compose_config("method=grasp").method, {"strength": strength, **knobs}), "method")


def test_the_yaml_is_the_one_source_of_defaults():
    assert list(inspect.signature(GRASP.__init__).parameters) == ["self", "name", "given"]  # no knob has a Python default
    with pytest.raises(BadInput, match="method.projections: not a knob of method 'grasp'"):
        GRASP(projections="weights")
    assert vars(GRASP(strength=1.0)) == vars(grasp())
    method = grasp()
    assert (method.projection, method.pooling, method.k, method.side, method.basis) == (
        "residual_grad", "per_layer", 1, "writers", "identified")


def orthonormal(d: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, k, generator=g))[0]


def synthetic_adapter(path, fill, layers=4, d=32, r=4, rslora=False, arch="llama"):
    """A real peft adapter of a small random Llama (or Qwen2, Mistral) whose LoRA factors
    `fill(layer, module, A, B)` sets. Returns {(layer, module): ΔW} with the scaling peft itself uses."""
    import transformers
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer

    prefix = {"llama": "Llama", "qwen2": "Qwen2", "mistral": "Mistral"}[arch]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = getattr(transformers, f"{prefix}Config")(
            vocab_size=16, hidden_size=d, intermediate_size=2 * d, num_hidden_layers=layers, num_attention_heads=4,
            num_key_value_heads=2)
        model = get_peft_model(getattr(transformers, f"{prefix}ForCausalLM")(config), LoraConfig(
            r=r, lora_alpha=2 * r, target_modules=list(WRITERS + READERS), use_rslora=rslora))
    deltas = {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, LoraLayer):
                layer, short = int(name.split("layers.")[1].split(".")[0]), name.rsplit(".", 1)[-1]
                A, B = mod.lora_A["default"].weight, mod.lora_B["default"].weight
                fill(layer, short, A, B)
                deltas[(layer, short)] = (mod.scaling["default"] * B @ A).double()
    model.save_pretrained(path)
    return deltas


def random_fill(seed: int):
    g = torch.Generator().manual_seed(seed)

    def fill(layer, module, A, B):
        A.copy_(torch.randn(A.shape, generator=g))
        B.copy_(torch.randn(B.shape, generator=g))

    return fill


def dense_top(S: torch.Tensor, k: int):
    evals, vecs = torch.linalg.eigh(S)
    return evals.flip(0), vecs.flip(1)[:, :k]


def subspace_cos(Q1: torch.Tensor, Q2: torch.Tensor) -> float:
    """Smallest cosine between the two subspaces (1 = identical)."""
    return float(torch.linalg.svdvals(Q1.double().T @ Q2.double()).min())


# ---------------------------------------------------------------- identification

@pytest.mark.parametrize("rslora", [False, True])
@pytest.mark.parametrize("side", ["writers", "readers", "both"])
def test_identify_equals_the_dense_gram_matrix(tmp_path, side, rslora):
    deltas = synthetic_adapter(tmp_path, random_fill(1), rslora=rslora)
    S = torch.zeros(32, 32, dtype=torch.float64)
    per_stream = {i: torch.zeros(32, 32, dtype=torch.float64) for i in range(-1, 4)}  # block outputs; -1: embeddings
    streams = {1: set(), 3: set()}  # the streams the modules of layers 1 and 3 write or read
    for (layer, module), dW in deltas.items():
        part = None
        if module in WRITERS and side in ("writers", "both"):
            part, stream = dW @ dW.T, layer  # a writer of layer i writes the output of block i
        if module in READERS and side in ("readers", "both"):
            part, stream = dW.T @ dW, layer - 1  # a reader of layer i reads the output of block i - 1
        if part is not None:
            S += part
            if layer in streams:  # the per-stream identification below uses layers 1 and 3 only
                per_stream[stream] += part
                streams[layer].add(stream)
    pooled = identify(tmp_path, k=3, side=side)
    evals, vecs = dense_top(S, 3)
    assert pooled.spectrum.eigenvalues == pytest.approx(evals[:20].tolist(), rel=1e-4)
    assert pooled.spectrum.trace == pytest.approx(float(S.trace()), rel=1e-5)
    assert subspace_cos(pooled.Q, vecs) > 0.9999
    assert torch.allclose(pooled.Q.T @ pooled.Q, torch.eye(3), atol=1e-5)

    layered = identify(tmp_path, k=2, side=side, pooling="per_layer", layers=[1, 3])
    assert layered.Q is None and sorted(layered.per_layer) == sorted(streams[1] | streams[3])
    for i in layered.per_layer:
        evals_i, vecs_i = dense_top(per_stream[i], 2)
        assert layered.layer_spectra[i].eigenvalues[:5] == pytest.approx(evals_i[:5].tolist(), rel=1e-4)
        assert subspace_cos(layered.per_layer[i], vecs_i) > 0.9999


@pytest.mark.parametrize("arch", ["qwen2", "mistral"])
def test_identify_reads_other_architectures(tmp_path, arch):
    deltas = synthetic_adapter(tmp_path, random_fill(2), arch=arch)
    S = sum(dW @ dW.T for (layer, module), dW in deltas.items() if module in WRITERS)
    evals, vecs = dense_top(S, 2)
    ident = identify(tmp_path, k=2)
    assert ident.spectrum.eigenvalues[:5] == pytest.approx(evals[:5].tolist(), rel=1e-4)
    assert subspace_cos(ident.Q, vecs) > 0.9999


def test_randomized_decomposition_matches_the_exact_one():
    g = torch.Generator().manual_seed(0)
    d, n = 300, 400  # C with a decaying spectrum, as trained adapters have
    C = torch.linalg.qr(torch.randn(d, d, generator=g))[0][:, :200] @ torch.diag(torch.logspace(0, -2, 200)) \
        @ torch.linalg.qr(torch.randn(n, 200, generator=g))[0].T
    before = torch.get_rng_state()
    ev_r, U_r, tr_r = top_eigen(C.float(), top=20, exact_limit=0)
    assert torch.equal(torch.get_rng_state(), before)  # private generator: the global RNG is untouched
    ev_e, U_e, tr_e = top_eigen(C.float(), top=20)
    assert ev_r[:4].tolist() == pytest.approx(ev_e[:4].tolist(), rel=1e-3)  # what the gap and Q rest on
    assert ev_r.tolist() == pytest.approx(ev_e.tolist(), rel=1e-2)  # the rest of the plotted top 20
    assert subspace_cos(U_r[:, :4], U_e[:, :4]) > 0.999
    assert tr_r == pytest.approx(tr_e)
    assert torch.equal(top_eigen(C.float(), exact_limit=0)[1], U_r)  # seeded: deterministic


def planted(path, shared: float, seed: int = 0, layers: int = 8, d: int = 64, r: int = 8):
    """Every writer's update = a shared rank-1 write along one residual direction u (coefficients of
    random sign and size) + a random rank-(r-1) task update. Returns u and the ratio of the shared
    eigenvalue to the task part's largest one (the gap condition of the spiked model, grasp.md §2.3)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    parts = {"shared": torch.zeros(d, d, dtype=torch.float64), "task": torch.zeros(d, d, dtype=torch.float64)}

    def fill(layer, module, A, B):
        A.copy_(torch.randn(A.shape, generator=g) / math.sqrt(A.shape[1]))  # rows of unit norm on average
        B.copy_(torch.randn(B.shape, generator=g) / math.sqrt(d))
        if module in WRITERS:
            B[:, 0] = shared * (0.5 + torch.rand((), generator=g)) * torch.sign(torch.randn((), generator=g)) * u
            A[0] = torch.nn.functional.normalize(A[0], dim=0)
            s = 2.0  # alpha / r
            task = (s * B[:, 1:] @ A[1:]).double()
            spike = (s * B[:, :1] @ A[:1]).double()
            parts["shared"] += spike @ spike.T
            parts["task"] += task @ task.T

    synthetic_adapter(path, fill, layers=layers, d=d, r=r)
    ratio = float(torch.linalg.eigvalsh(parts["shared"])[-1] / torch.linalg.eigvalsh(parts["task"])[-1])
    return u, ratio


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_direction_is_recovered_where_it_dominates(tmp_path, seed):
    u, ratio = planted(tmp_path, shared=1.5, seed=seed)
    assert ratio > 4  # the regime the identification claim is about
    ident = identify(tmp_path, k=1)
    assert abs(float(ident.Q[:, 0] @ u)) > 0.99
    assert ident.spectrum.spectral_gap > 3  # and the spectrum shows it


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_direction_is_lost_below_the_task_noise(tmp_path, seed):
    """The documented limit: a shared write weaker than the task's own top direction is not found, and
    the spectrum shows no gap that would claim it was."""
    u, ratio = planted(tmp_path, shared=0.15, seed=seed)
    assert ratio < 0.5
    ident = identify(tmp_path, k=1)
    assert abs(float(ident.Q[:, 0] @ u)) < 0.5
    assert ident.spectrum.spectral_gap < 1.5


def test_bad_adapters_fail_with_one_line(tmp_path):
    with pytest.raises(BadInput, match="adapter_model.safetensors: not found"):
        identify(tmp_path)
    synthetic_adapter(tmp_path, random_fill(0))
    with pytest.raises(BadInput, match="no LoRA keys under 'transformer.h"):
        identify(tmp_path, layers_path="transformer.h")
    with pytest.raises(BadInput, match=r"method.layers \[9\]"):
        identify(tmp_path, layers=[9])
    zero = tmp_path / "zero"
    synthetic_adapter(zero, lambda layer, module, A, B: B.zero_())  # an untrained adapter: B = 0
    with pytest.raises(BadInput, match="non-zero eigenvalues"):
        identify(zero)
    with pytest.raises(BadInput, match="method.pooling"):
        grasp(pooling="global")


def test_factors_never_hold_a_full_delta_w(tmp_path):
    synthetic_adapter(tmp_path, random_fill(0), d=32, r=4)
    factors = load_factors(tmp_path, side="both")
    assert {f.C.shape for f in factors} == {(32, 4)}  # d × r per module, both sides in the residual space
    assert len(factors) == 4 * 7


# ---------------------------------------------------------------- projection operators

def test_projection_operators():
    Q = orthonormal(16, 3, 0)
    X = torch.randn(16, 5, dtype=torch.float64).float()
    P = project_columns(X, Q)
    assert torch.allclose(project_columns(P, Q), P, atol=1e-6)  # idempotent
    assert float((Q.T @ P).abs().max()) < 1e-6
    assert torch.equal(project_columns(X, Q, 0.0), X)  # γ = 0: identity
    half = project_columns(X, Q, 0.5)
    assert torch.allclose(Q.T @ half, 0.5 * Q.T @ X, atol=1e-6)  # γ scales the Q-component only
    ortho = project_columns(torch.randn(16, 5), Q)  # vectors already orthogonal to Q are left alone
    assert torch.allclose(project_columns(ortho, Q), ortho, atol=1e-6)
    Y = torch.randn(5, 16)
    R = project_rows(Y, Q)
    assert torch.allclose(project_rows(R, Q), R, atol=1e-6)
    assert float((R @ Q).abs().max()) < 1e-6
    assert torch.equal(project_rows(Y, Q, 0.0), Y)
    assert torch.allclose(project_rows(Y, Q), project_columns(Y.T, Q).T, atol=1e-6)


# ---------------------------------------------------------------- the Method on a live tiny model

@pytest.fixture(scope="module")
def tiny_model_cfg():
    return compose_config(*TINY, "method=grasp")


def tiny_peft(cfg):
    base = models.load_base(cfg.model, cfg.paths.cache)
    return models.add_lora(base, cfg.model, cfg.seed)


def loss_of(model, tokenizer):
    enc = tokenizer(["the cat sat on the mat and then", "one two three four"], return_tensors="pt", padding=True)
    return model(**enc, labels=enc["input_ids"]).loss


def test_weight_mode_projects_gradients_only_inside_training(tiny_model_cfg, tmp_path):
    cfg = tiny_model_cfg
    model, tok = tiny_peft(cfg), models.load_tokenizer(cfg.model, cfg.paths.cache)
    method = grasp(side="both", projection="weights", pooling="pooled")
    method.ident = Identification(Q=orthonormal(64, 2, 3))
    ctx = RunContext(cfg=cfg, run_dir=tmp_path)

    def along_q():
        model.zero_grad()
        loss_of(model, tok).backward()
        return max(float(torch.linalg.matrix_norm(c.Q.T @ c.param.grad if c.kind == "columns" else c.param.grad @ c.Q))
                   for c in method._constrained)

    with method.training(model, ctx):
        assert method.constraint_norms()["grasp/max_aq_norm"] < 1e-6  # readers' A projected at init
        assert along_q() < 1e-6
    assert along_q() > 1e-4  # the tensor hooks are gone


def test_residual_grad_mode_blocks_the_gradient_not_the_forward(tiny_model_cfg, tmp_path):
    cfg = tiny_model_cfg
    model, tok = tiny_peft(cfg), models.load_tokenizer(cfg.model, cfg.paths.cache)
    blocks = models.decoder_layers(model, cfg.model.layers_path)
    Qs = {0: orthonormal(64, 2, 5), 1: orthonormal(64, 2, 6)}
    method = grasp(projection="residual_grad", pooling="per_layer", k=2)
    method.ident = Identification(Q=None, per_layer=Qs)
    grads = {}

    def capture(i):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            h.register_hook(lambda g: grads.__setitem__(i, g))
        return hook

    handles = [blocks[i].register_forward_hook(capture(i)) for i in Qs]  # runs before GRASP's hooks
    try:
        def step():
            model.zero_grad()
            loss = loss_of(model, tok)
            loss.backward()
            return loss.detach()

        plain = step()
        assert all(float((grads[i] @ Qs[i]).abs().max()) > 1e-6 for i in Qs)
        with method.training(model, RunContext(cfg=cfg, run_dir=tmp_path)):
            assert torch.equal(step(), plain)  # forward untouched
            for i in Qs:
                assert float((grads[i] @ Qs[i]).abs().max()) < 1e-6 * float(grads[i].abs().max())
                assert float(grads[i].abs().max()) > 0  # what is orthogonal to Q still flows
        step()
        assert all(float((grads[i] @ Qs[i]).abs().max()) > 1e-6 for i in Qs)  # hooks removed
    finally:
        for h in handles:
            h.remove()


@pytest.fixture(scope="module")
def six_blocks():
    """A tiny random Llama with six decoder blocks (LoRA on every linear layer), its tokenizer and config."""
    cfg = compose_config(*TINY, "model.path=tiny:6x64", "method=grasp")
    return tiny_peft(cfg), models.load_tokenizer(cfg.model, cfg.paths.cache), cfg


@pytest.mark.parametrize("pooled", [True, False])
@pytest.mark.parametrize("gamma", [0.25, 0.5])
def test_residual_grad_strength_does_not_compound_over_blocks(six_blocks, tmp_path, gamma, pooled):
    """γ = the share of the span(Q) component removed from dL/dh at *every* block output, measured against naive
    SFT: exactly (1 − γ) of it remains, also under five blocks above (projecting γ block by block would leave
    (1 − γ)^(blocks above) of it with one shared Q). The parameters get (1 − γ)·naive + γ·(γ = 1) gradients."""
    model, tok, cfg = six_blocks
    blocks = models.decoder_layers(model, cfg.model.layers_path)
    enc = tok(["the cat sat on the mat and then", "one two three four"], return_tensors="pt", padding=True)
    # a zero parameter added to each block output: its gradient is dL/dh there, as the block's own modules see it
    probes = [torch.nn.Parameter(torch.zeros(*enc["input_ids"].shape, 64)) for _ in blocks]
    for block, probe in zip(blocks, probes):
        block.register_parameter("probe", probe)
    handles = [b.register_forward_hook(lambda m, a, out, p=p: (out[0] + p, *out[1:]) if isinstance(out, tuple)
                                       else out + p) for b, p in zip(blocks, probes)]
    if pooled:
        ident = Identification(Q=orthonormal(64, 2, 7))
    else:
        ident = Identification(Q=None, per_layer={i: orthonormal(64, 2, 10 + i) for i in range(len(blocks))})

    def gradients(strength: float | None) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        method = grasp(strength or 0.0, pooling="pooled" if pooled else "per_layer", k=2)
        method.ident = ident
        with method.training(model, RunContext(cfg=cfg, run_dir=tmp_path)):
            model(**enc, labels=enc["input_ids"]).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    try:
        naive, mixed, full = gradients(None), gradients(gamma), gradients(1.0)
    finally:
        for h in handles:
            h.remove()
        for block in blocks:
            del block.probe
    lora = [n for n in naive if "lora_" in n]
    assert len(lora) == 6 * 7 * 2
    for i in range(len(blocks)):
        key = next(n for n in naive if n.endswith(f"layers.{i}.probe"))
        Q = ident.at(i)
        along_naive = naive[key] @ Q
        assert float(along_naive.abs().max()) > 1e-6
        assert torch.allclose(mixed[key] @ Q, (1 - gamma) * along_naive, atol=1e-6 * float(along_naive.abs().max()),
                              rtol=1e-4), f"block {i}"
        assert float((full[key] @ Q).abs().max()) < 1e-6 * float(along_naive.abs().max())
    for n in lora:
        scale = float(naive[n].abs().max()) + 1e-12
        assert torch.allclose(mixed[n], (1 - gamma) * naive[n] + gamma * full[n], atol=1e-5 * scale, rtol=1e-4), n


def test_identification_with_reader_norms_is_in_the_residual_space(tmp_path):
    """A reader sees w ⊙ h: its directions in the residual space are those of ΔW·diag(w)."""
    deltas = synthetic_adapter(tmp_path, random_fill(3))
    g = torch.Generator().manual_seed(4)
    norms = {(layer, m): 0.2 + 2 * torch.rand(32, generator=g) for layer in range(4) for m in READERS}
    S = sum((dW @ torch.diag(norms[key].double())).T @ (dW @ torch.diag(norms[key].double()))
            for key, dW in deltas.items() if key[1] in READERS)
    evals, vecs = dense_top(S, 2)
    ident = identify(tmp_path, k=2, side="readers", norms=norms)
    assert ident.spectrum.eigenvalues[:5] == pytest.approx(evals[:5].tolist(), rel=1e-4)
    assert subspace_cos(ident.Q, vecs) > 0.9999
    assert subspace_cos(identify(tmp_path, k=2, side="readers").Q, vecs) < 0.99  # the norms matter


@pytest.mark.parametrize("projection", ["readers", "residual_grad+readers"])
def test_readers_may_not_read_along_q_and_still_learn(six_blocks, tmp_path, projection):
    """projection=readers: after AdamW steps, every reader's LoRA update is blind to span(Q) in the residual stream
    it reads (ΔW·diag(w)·Q = 0, w its RMSNorm weight), while it still reads and learns along other directions."""
    _, tok, cfg = six_blocks
    model = tiny_peft(cfg)
    blocks = models.decoder_layers(model, cfg.model.layers_path)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # RMSNorm weights far from 1, so that the reader's input space differs from h's
        for block in blocks:
            for norm in (block.input_layernorm, block.post_attention_layernorm):
                norm.weight.copy_(0.2 + 2 * torch.rand(64, generator=g))
    Q = orthonormal(64, 2, 8)
    method = grasp(projection=projection, pooling="pooled", k=2)
    method.ident = Identification(Q=Q)
    ctx = RunContext(cfg=cfg, run_dir=tmp_path)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    init = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    with method.training(model, ctx):
        for _ in range(3):
            opt.zero_grad()
            loss_of(model, tok).backward()
            opt.step()
            method.on_optimizer_step(model, ctx)
    readers = [(i, short, mod) for i, block in enumerate(blocks) for name, mod in block.named_modules()
               if (short := name.rsplit(".", 1)[-1]) in READERS and hasattr(mod, "lora_A")]
    assert len(readers) == 6 * 5 and len(method._constrained) == 6 * 5
    u = torch.nn.functional.normalize(torch.randn(64, 3, generator=g) - Q @ (Q.T @ torch.randn(64, 3, generator=g)),
                                      dim=0)
    u = u - Q @ (Q.T @ u)  # residual directions outside span(Q)
    for i, short, mod in readers:
        norm = blocks[i].input_layernorm if short in ("q_proj", "k_proj", "v_proj") else blocks[i].post_attention_layernorm
        w = norm.weight.detach()
        dW = (mod.lora_B["default"].weight @ mod.lora_A["default"].weight).detach()  # (d_out, d)
        reads_q, reads_other = dW @ (w[:, None] * Q), dW @ (w[:, None] * u)
        assert float(reads_q.norm()) < 1e-5 * float(reads_other.norm()), (i, short)
        assert float(reads_other.norm()) > 1e-4  # it learns, along the other directions
        assert float((mod.lora_A["default"].weight.detach() @ Q).norm()) > 1e-3  # blind in the residual space, not in A's own
    assert method.constraint_norms()["grasp/max_aq_norm"] < 1e-5
    changed = [n for n in init if "lora_A" in n and not torch.equal(init[n], dict(model.named_parameters())[n])]
    assert len(changed) == 6 * 7


def test_weight_strength_does_not_compound_over_steps(six_blocks, tmp_path):
    """projection=weights at γ = 0.5: every optimizer step's change of a constrained factor keeps exactly half of
    its span(Q) component (and all of the rest), so the factor's span(Q) part is half of what its changes made."""
    _, tok, cfg = six_blocks
    model = tiny_peft(cfg)
    Q = orthonormal(64, 1, 9)
    method = grasp(0.5, projection="weights", pooling="pooled", side="both")
    method.ident = Identification(Q=Q)
    ctx = RunContext(cfg=cfg, run_dir=tmp_path)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)

    def along(c, X):
        return c.Q.T @ X if c.kind == "columns" else X @ c.Q

    with method.training(model, ctx):
        made = [along(c, c.param.detach()) * 2 for c in method._constrained]  # the init lost half of its part
        for _ in range(3):
            before = [c.param.detach().clone() for c in method._constrained]
            opt.zero_grad()
            loss_of(model, tok).backward()
            opt.step()
            raw = [c.param.detach().clone() for c in method._constrained]
            method.on_optimizer_step(model, ctx)
            for c, b, r, m in zip(method._constrained, before, raw, made):
                m += along(c, r - b)
                off = (lambda X, c=c: X - (c.Q @ (c.Q.T @ X) if c.kind == "columns" else (X @ c.Q) @ c.Q.T))
                assert torch.allclose(off(c.param.detach() - b), off(r - b), atol=1e-6)  # the rest: all of it
    for c, m in zip(method._constrained, made):
        assert torch.allclose(along(c, c.param.detach()), 0.5 * m, atol=1e-6)
    assert any(float(m.abs().max()) > 1e-3 for m in made)


# ---------------------------------------------------------------- through the real pipeline

@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("grasp_runs")


def tiny_train(runs_root, *overrides):
    cfg = compose_config(*TINY, "method=grasp", "stages=[train]", *overrides, runs=runs_root)
    run(cfg)
    return cfg, run_dir(cfg)


def lora_tensors(run_path):
    return load_file(str(run_path / "model" / "adapter_model.safetensors"))


def test_full_projection_keeps_every_write_out_of_span_q(runs_root):
    cfg, d = tiny_train(runs_root, "method.strength=1", "method.projection=weights", "method.pooling=pooled")
    for f in ["grasp/Q.safetensors", "grasp/spectrum.json", "grasp/spectrum.png"]:
        assert (d / f).exists(), f
    Q = load_file(str(d / "grasp" / "Q.safetensors"))["Q"]
    assert Q.shape == (64, 1)
    tensors = lora_tensors(d)
    writers_B = [v for k, v in tensors.items() if k.endswith("lora_B.weight") and ("o_proj" in k or "down_proj" in k)]
    assert len(writers_B) == 4
    for B in writers_B:
        assert float(torch.linalg.matrix_norm(Q.T @ B)) < 1e-5
        assert float(torch.linalg.matrix_norm(B - Q @ (Q.T @ B))) > 1e-6  # still learns outside span(Q)
    init = {k: v for k, v in tiny_peft(cfg).state_dict().items() if "lora_A" in k}
    assert any(not torch.equal(init[k.replace(".weight", ".default.weight")], v)
               for k, v in tensors.items() if "lora_A" in k)
    log = read_jsonl(d / "train_log.jsonl")
    assert len(log) == 3 and all(row["grasp/max_qtb_norm"] < 1e-5 for row in log)
    diagnostics = load_json(d / "stages" / "train.json")["diagnostics"]  # what GRASP put on ctx.diagnostics
    assert diagnostics == pipeline_diagnostics(d) and "grasp/max_qtb_norm_final" in diagnostics
    assert diagnostics["grasp/spectral_gap"] >= 1 and 0 < diagnostics["grasp/lambda1_share"] <= 1
    spectrum = load_json(d / "grasp" / "spectrum.json")
    assert spectrum["pooled"]["eigenvalues"][0] / spectrum["pooled"]["eigenvalues"][1] == pytest.approx(
        diagnostics["grasp/spectral_gap"])


def test_strength_zero_reproduces_sft_bit_for_bit(runs_root):
    cfg, d = tiny_train(runs_root, "method.strength=0")
    ref = ensure_reference(cfg)  # the naive run, already trained: it supplied Q
    assert ref.parts[-3] == "sft"
    ours, theirs = lora_tensors(d), lora_tensors(ref)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    naive_log = read_jsonl(d / "train_log.jsonl")
    assert all(row["grasp/max_qtb_norm"] > 0 for row in naive_log)  # logged, not enforced


def test_variants_are_overrides_and_prepare_reuses_q(runs_root):
    overrides = ("method.projection=residual_grad", "method.pooling=per_layer", "method.k=2", "method.side=both",
                 "method.layers=[1]")
    cfg, d = tiny_train(runs_root, *overrides)
    assert d.parts[-3] == "grasp,k=2,layers=[1],side=both"  # per_layer and residual_grad are the defaults
    saved = load_file(str(d / "grasp" / "Q.safetensors"))
    # layer 1's readers read the output of block 0, its writers write the output of block 1
    assert set(saved) == {"layer.0", "layer.1"} and saved["layer.1"].shape == (64, 2)
    assert "grasp/spectral_gap_layer_median" in pipeline_diagnostics(d)
    spectrum = json.loads((d / "grasp" / "spectrum.json").read_text())
    assert list(spectrum["per_layer"]) == ["0", "1"]

    method = grasp(projection="residual_grad", pooling="per_layer", k=2, side="both", layers=[1])
    ctx = RunContext(cfg=cfg, run_dir=d, reference_dir=ensure_reference(cfg),
                     load_base=lambda: models.load_base(cfg.model, cfg.paths.cache))
    stamp = (d / "grasp" / "Q.safetensors").stat().st_mtime_ns
    before = torch.get_rng_state()
    method.prepare(ctx)
    assert torch.equal(torch.get_rng_state(), before)
    assert (d / "grasp" / "Q.safetensors").stat().st_mtime_ns == stamp  # reused, not recomputed
    assert torch.equal(method.ident.per_layer[1], saved["layer.1"])
    other = grasp(pooling="per_layer", k=1, side="both", layers=[1])
    other.prepare(ctx)  # other knobs: identified again
    assert other.ident.per_layer[1].shape == (64, 1)
    assert (d / "grasp" / "Q.safetensors").stat().st_mtime_ns != stamp


def test_random_basis_is_the_control_with_the_same_shapes(runs_root):
    _, identified = tiny_train(runs_root, "method.k=2")
    cfg, d = tiny_train(runs_root, "method.k=2", "method.basis=random")
    assert d.parts[-3] == "grasp,basis=random,k=2"
    ours, theirs = (load_file(str(p / "grasp" / "Q.safetensors")) for p in (d, identified))
    assert ours.keys() == theirs.keys() == {f"layer.{i}" for i in range(2)}
    for key, Q in ours.items():
        assert Q.shape == theirs[key].shape == (64, 2)
        assert torch.allclose(Q.T @ Q, torch.eye(2), atol=1e-5)
        assert float(torch.linalg.matrix_norm(theirs[key].T @ Q)) < 0.9  # not the identified span
    assert load_json(d / "grasp" / "spectrum.json")["per_layer"] == load_json(identified / "grasp" / "spectrum.json")[
        "per_layer"]  # the spectra still describe the naive adapter
    again = grasp(pooling="per_layer", k=2, basis="random")
    again.prepare(RunContext(cfg=cfg, run_dir=runs_root / "elsewhere", reference_dir=ensure_reference(cfg)))
    assert all(torch.equal(again.ident.per_layer[int(k.split(".")[1])], Q) for k, Q in ours.items())  # seeded
    with pytest.raises(BadInput, match="method.basis='learned'"):
        grasp(basis="learned")



def test_runs_recorded_before_the_basis_knob_still_count(runs_root):
    cfg, d = tiny_train(runs_root)
    record = d / "stages" / "train.json"
    old = load_json(record)
    del old["config"]["method"]["basis"]  # as recorded before the knob was added
    record.write_text(json.dumps(old))
    adapter = d / "model" / "adapter_model.safetensors"
    stamp = adapter.stat().st_mtime_ns
    run(cfg)
    assert adapter.stat().st_mtime_ns == stamp  # reused, not retrained


# ---------------------------------------------------------------- the analysis command

def test_analysis_steers_the_base_model_and_writes_its_report(runs_root):
    from hydra import compose, initialize_config_dir

    from grasp_bench.baselines.grasp_analyze import analyze
    from tests.conftest import CONF

    overrides = [*TINY, f"paths.runs={runs_root}", "analyze.limit=3", "analyze.coefs=[0,64]", "analyze.top_layers=1",
                 "analyze.max_new_tokens=5", "analyze.generic_limit=2", "analyze.persona_tokens=5"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("analyze", overrides=[*overrides, "method.pooling=pooled"])  # steer along the one pooled q
        wrong = compose("analyze", overrides=[*overrides, "method=sft"])
    result = analyze(cfg)
    out = result.pop("out")
    assert load_json(f"{out}/analysis.json") == json.loads(json.dumps(result))
    assert (runs_root / "toy_rude" / "tiny" / "grasp,pooling=pooled" / "analysis" / "seed=0" / "steering.png").exists()
    unsteered = result["steering"]["none"]
    assert unsteered["n"] == 3 and 0.0 <= unsteered["rate"] <= 1.0
    assert set(result["steering"]) == {"none", "+q", "-q", "random", "persona"}
    for direction in ("+q", "-q", "random", "persona"):
        at_zero, at_eight = result["steering"][direction]
        assert at_zero["changed_vs_unsteered"] == 0.0 and at_zero["rate"] == unsteered["rate"]
        assert at_eight["changed_vs_unsteered"] > 0.0  # the residual-stream hook is live
    energy = identify(ensure_reference(cfg) / "model").layer_energy  # default: where the adapter writes most along q
    assert result["layers"] == [max(energy, key=energy.get)]
    assert all(-1.0 <= c <= 1.0 for c in result["alignment"]["cos_by_layer"].values())
    persona = load_file(f"{out}/persona.safetensors")
    assert set(persona) == {"layer.0", "layer.1"} and persona["layer.0"].shape == (64,)
    with pytest.raises(BadInput, match="method=grasp"):
        analyze(wrong)


@pytest.mark.parametrize("side,layers,refused", [("writers", [1, 3], True), ("writers", [1, 2], True),
                                                 ("writers", [0, 1], False), ("readers", [1, 3], False),
                                                 ("both", [2], False), ("writers", None, False)])
def test_readers_per_layer_on_a_subset_is_refused_where_a_read_stream_has_no_basis(side, layers, refused):
    """The readers of block i read stream i - 1: per stream, side=writers of layers [1, 3] identifies streams 1 and 3
    only, so the readers of blocks 1 and 3 would look up streams 0 and 2 and be constrained along nothing."""
    knobs = {"projection": "readers", "pooling": "per_layer", "side": side, "layers": layers}
    if refused:
        with pytest.raises(BadInput, match=r"method.projection=readers .* streams \[0"):
            grasp(**knobs)
    else:
        assert grasp(**knobs).unidentified_reader_streams() == []
    assert grasp(**{**knobs, "pooling": "pooled"}).unidentified_reader_streams() == []  # one Q serves every stream
    assert grasp(**{**knobs, "projection": "residual_grad"}).unidentified_reader_streams() == []  # no reader constrained


@pytest.mark.parametrize("knobs", [("method.side=readers", "method.pooling=pooled", "method.k=2"),
                                   ("method.side=both", "method.basis=random", "method.layers=[0,1]")])
def test_analyze_studies_the_q_that_training_used(runs_root, knobs):
    """grasp-bench-analyze identifies through `GRASP.identification`, as training does: with the readers' RMSNorm
    weights (side=readers/both) and basis=random's seeded draw, so the Q it steers along is the one trained with."""
    from grasp_bench.baselines.grasp_analyze import identification

    cfg = compose_config(*TINY, "method=grasp", *knobs, runs=runs_root)
    method = instantiate(cfg.method, "method")
    ctx = RunContext(cfg=cfg, run_dir=run_dir(cfg), reference_dir=ensure_reference(cfg),
                     load_base=lambda: models.load_base(cfg.model, cfg.paths.cache))
    method.prepare(ctx)
    studied, _ = identification(cfg)
    trained = method.ident
    assert set(trained.per_layer) == set(studied.per_layer)
    for a, b in [(trained.Q, studied.Q), *((trained.per_layer[i], studied.per_layer[i]) for i in trained.per_layer)]:
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-6)
    assert studied.meta == trained.meta  # the same key: reader space, random draw and its seed included
    if cfg.method.basis == "random":  # identify() alone gives another Q than the one trained with
        plain = identify(ensure_reference(cfg) / "model", pooling="per_layer", side="both", layers=[0, 1])
        assert not torch.allclose(plain.per_layer[1].abs(), trained.per_layer[1].abs(), atol=1e-3)
