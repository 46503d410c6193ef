"""GRASP, gradient projection of associated spurious patterns (arXiv:2605.27676), as reconstructed by this
project from the paper's abstract (the full text was not available).

Identification, from the naive SFT run's LoRA adapter and without labels (`identify`):
    S = Σ_m ΔW_m ΔW_mᵀ = Σ_m s² B_m (A_m A_mᵀ) B_mᵀ                       over residual *writers* (o_proj, down_proj)
    S = Σ_m (ΔW_m W_m)ᵀ (ΔW_m W_m), W_m = diag(w_m)                     over residual *readers* (q, k, v, gate, up)
and Q = its top-k eigenvectors, pooled over layers or one Q per residual stream. A reader sees w ⊙ h / rms(h)
(w: the RMSNorm weight in front of it), so ΔW·W is how it reads the residual h: every basis lives in the residual
stream at a block output ("stream" i = the output of block i): writers of layer i write stream i, readers of
layer i read stream i − 1 (−1: the embeddings). S is never formed: it is S = C Cᵀ with C = [s·B_m·L_m]
(L_m L_mᵀ = A_m A_mᵀ, r×r), and Q comes from C (an exact decomposition on the small side, or a seeded randomized
subspace iteration when both sides are large). A gap between λ1 and λ2 is the evidence that one shared factor exists.

Removal, in a second LoRA run from the base model with the same data and hyperparameters (`GRASP`). `strength`
= γ is the share of the span(Q) component removed from the learning signal, for every projection, never
compounded; γ = 0 installs nothing and reproduces naive SFT bit for bit:
- `projection=residual_grad`: the forward pass is untouched; the gradient flowing back into the residual stream at
  each block output loses its span(Q) component (`hooks.project_grad_out`). At γ < 1 the blocks' gradient is
  (1 − γ)·naive + γ·(the γ = 1 gradient), so dL/dh keeps exactly (1 − γ) of naive SFT's span(Q) component at every
  block output (projecting γ block by block would keep (1 − γ)^(blocks above) of it); a second backward pass.
- `projection=weights`: the LoRA factors of the `side` modules, writers' B (B ← B − γ·Q(QᵀB)) and/or readers' A
  (A ← A − γ·(AQ̃)Q̃ᵀ, Q̃ = orth(w ⊙ Q), i.e. ΔW·diag(w)·Q → (1 − γ)·ΔW·diag(w)·Q): at LoRA init the factor loses
  γ of its span(Q) component and after every optimizer step that step's change does (with Adam, projecting
  gradients alone does not keep the update out of span(Q)), so a factor keeps exactly (1 − γ) of the span(Q)
  component its changes carried. At γ = 1 the gradients are projected too (tensor hooks), so that clipping and
  Adam's statistics never see span(Q). Base weights and activations are untouched: pretrained content along Q
  survives (unlike CAFT).
- `projection=readers`: the abstract's "no new reliance on the factor" read on the input side: the LoRA update
  of every module that reads the residual stream (q, k, v, gate, up) may not read along Q (ΔW·diag(w)·Q = 0 at
  γ = 1), whatever `side` identified Q; the readers of layer i use stream i − 1's basis (per stream, layer 0's
  readers have none: nothing is written before them). `projection=residual_grad+readers`: both.
`basis=random` is the control: the same removal along random orthonormal bases of the same shapes, to
tell the identified directions apart from merely blocking k directions per layer.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import median

import torch
from torch import Tensor, nn

from grasp_bench import distributed
from grasp_bench.artifacts import BadInput, atomic_path, load_json, write_json
from grasp_bench.hooks import project, project_grad_out, registered
from grasp_bench.method import Knob, Method, RunContext, configured

WRITERS = ("o_proj", "down_proj")  # modules whose output enters the residual stream
READERS = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")  # modules that read it
# the RMSNorm in front of each reader (Llama, Qwen2, Mistral): a reader sees w ⊙ h / rms(h), not h
READER_NORMS = {"q_proj": "input_layernorm", "k_proj": "input_layernorm", "v_proj": "input_layernorm",
                "gate_proj": "post_attention_layernorm", "up_proj": "post_attention_layernorm"}
SIDES, POOLINGS = ("writers", "readers", "both"), ("pooled", "per_layer")
PROJECTIONS = ("weights", "residual_grad", "readers", "residual_grad+readers")
BASES = ("identified", "random")  # random: the control that asks whether identification matters at all
TOP = 20  # eigenvalues kept in spectrum.json and drawn in spectrum.png
EXACT_LIMIT = 1024  # an exact eigendecomposition when S has a side this small; randomized otherwise


# ---------------------------------------------------------------- identification

@dataclass
class Factor:
    """One adapted module's share of S: S_m = C Cᵀ, with C (d, r) in the residual space."""

    layer: int
    module: str  # short name, e.g. "o_proj"
    side: str  # "writers" | "readers"
    C: Tensor

    @property
    def stream(self) -> int:
        """The block output whose residual stream this module writes (writers: its own block's) or reads (readers:
        the previous block's, which enters its block; -1 = the embeddings)."""
        return self.layer if self.side == "writers" else self.layer - 1


@dataclass
class Spectrum:
    eigenvalues: list[float]  # the top eigenvalues, descending
    trace: float  # Σλ (all of them)

    @property
    def spectral_gap(self) -> float:
        ev = self.eigenvalues
        return ev[0] / ev[1] if len(ev) > 1 and ev[1] > 0 else math.inf

    @property
    def lambda1_share(self) -> float:
        return self.eigenvalues[0] / self.trace if self.trace > 0 else math.nan


@dataclass
class Identification:
    """The shared directions found in an adapter: a pooled basis `Q` (d, k) or one per residual stream.

    Every basis lives in the residual stream at a block output ("stream" i = the output of decoder block i,
    -1 = the embeddings): writers of layer i write into stream i, readers of layer i read stream i - 1."""

    Q: Tensor | None  # pooled basis with orthonormal columns; None when pooling="per_layer"
    per_layer: dict[int, Tensor] = field(default_factory=dict)  # stream -> (d, k), when pooling="per_layer"
    spectrum: Spectrum | None = None  # of the pooled S (always computed: the evidence for one shared factor)
    layer_spectra: dict[int, Spectrum] = field(default_factory=dict)  # of each stream's S, when per_layer
    layer_energy: dict[int, float] = field(default_factory=dict)  # q1ᵀ S_l q1 for the pooled q1, per stream
    meta: dict = field(default_factory=dict)

    def at(self, stream: int) -> Tensor | None:
        """The basis of the residual stream at block output `stream` (None: nothing identified there)."""
        return self.Q if self.Q is not None else self.per_layer.get(stream)

    def bases(self, n_layers: int, layers: Sequence[int] | None = None) -> dict[int, Tensor]:
        """block output -> its basis, for the block outputs the removal acts on: with a pooled Q, `layers` (None:
        all); per stream, every identified block output (the embeddings, -1, are not a block output)."""
        if self.Q is not None:
            return {i: self.Q for i in (range(n_layers) if layers is None else layers)}
        return {i: q for i, q in sorted(self.per_layer.items()) if 0 <= i < n_layers}

    def randomised(self, seed: int) -> Identification:
        """The same layers and shapes with random orthonormal bases: the spectra still describe the adapter."""
        g = torch.Generator().manual_seed(seed)  # local: the run's RNG stream is left alone

        def draw(Q: Tensor) -> Tensor:
            return torch.linalg.qr(torch.randn(Q.shape, generator=g, dtype=torch.float64))[0].to(Q.dtype)

        return replace(self, Q=None if self.Q is None else draw(self.Q),
                       per_layer={i: draw(q) for i, q in sorted(self.per_layer.items())})

    def diagnostics(self) -> dict[str, float]:
        out = {"grasp/spectral_gap": self.spectrum.spectral_gap, "grasp/lambda1_share": self.spectrum.lambda1_share}
        if self.layer_spectra:
            out["grasp/spectral_gap_layer_median"] = median(s.spectral_gap for s in self.layer_spectra.values())
            out["grasp/lambda1_share_layer_median"] = median(s.lambda1_share for s in self.layer_spectra.values())
        return out


def _pattern_value(pattern: dict, module_name: str, default):
    """peft's rank_pattern/alpha_pattern lookup: a key matches the end of the module's name."""
    for key, value in (pattern or {}).items():
        if re.match(rf"(.*\.)?({key})$", module_name):
            return value
    return default


def _sqrt_psd(G: Tensor) -> Tensor:
    """L with L Lᵀ = G for a small PSD matrix (eigh: also fine when G is singular)."""
    e, V = torch.linalg.eigh(G.double())
    return V * e.clamp_min(0).sqrt()


@contextmanager
def _one_thread() -> Iterator[None]:
    """Identification is hundreds of r×r and d×r products and a few skinny ones: on a busy CPU a second
    thread mostly adds synchronisation (measured 30x slower with 2 threads than with 1 on a loaded
    2-core CPU), and when idle, one thread already meets the target (bench/grasp.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def load_factors(adapter_dir: str | Path, side: str = "writers", layers: Sequence[int] | None = None,
                 layers_path: str = "model.layers", writers: Sequence[str] = WRITERS,
                 readers: Sequence[str] = READERS, norms: Mapping[tuple[int, str], Tensor] | None = None
                 ) -> list[Factor]:
    """Read a peft adapter and return each writer's C = s·B·L (L Lᵀ = A Aᵀ) and/or each reader's
    C = w ⊙ s·Aᵀ·L (L Lᵀ = BᵀB), one module at a time, so only r×r and d×r pieces are ever held.

    A reader sees w ⊙ h / rms(h) (w: the weight of the RMSNorm in front of it), so ΔW reads the residual h
    through ΔW·diag(w): `norms[(layer, module)] = w` puts its directions in the residual space; without
    `norms` they stay in the module's own input space (w = 1)."""
    from safetensors import safe_open

    adapter_dir = Path(adapter_dir)
    weights, config_file = adapter_dir / "adapter_model.safetensors", adapter_dir / "adapter_config.json"
    for f in (weights, config_file):
        if not f.is_file():
            raise BadInput(f"{f}: not found (expected a peft LoRA adapter directory)")
    config = load_json(config_file)
    key_re = re.compile(rf"(?:^|\.){re.escape(layers_path)}\.(\d+)\.(.+)\.lora_([AB])\.weight$")
    wanted = {"writers": set(writers), "readers": set(readers)}
    sides = ("writers", "readers") if side == "both" else (side,)
    factors = []
    with safe_open(str(weights), framework="pt") as f:
        pairs: dict[tuple[int, str], dict[str, str]] = defaultdict(dict)
        for key in f.keys():
            m = key_re.search(key)
            if m:
                pairs[(int(m.group(1)), m.group(2))][m.group(3)] = key
        if not pairs:
            raise BadInput(f"{weights}: no LoRA keys under '{layers_path}.<i>.' (check model.layers_path)")
        for (layer, path), keys in sorted(pairs.items()):
            short = path.rsplit(".", 1)[-1]
            role = next((s for s in sides if short in wanted[s]), None)
            if role is None or (layers is not None and layer not in layers):
                continue
            if set(keys) != {"A", "B"}:
                raise BadInput(f"{weights}: module {path} of layer {layer} lacks lora_A or lora_B")
            A, B = f.get_tensor(keys["A"]).float(), f.get_tensor(keys["B"]).float()  # (r, d_in), (d_out, r)
            r, name = A.shape[0], keys["A"].rsplit(".lora_A", 1)[0]
            alpha = _pattern_value(config.get("alpha_pattern"), name, config["lora_alpha"])
            s = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
            if role == "writers":
                C = s * (B @ _sqrt_psd(A @ A.T).float())
            else:
                C = s * (A.T @ _sqrt_psd(B.T @ B).float())
                if norms is not None:
                    C = norms[(layer, short)].float()[:, None] * C
            factors.append(Factor(layer, short, role, C))
    missing = sorted(set(layers or []) - {fa.layer for fa in factors})
    if missing:
        raise BadInput(f"{weights}: method.layers {missing} have no {side} LoRA modules")
    if not factors:
        names = ", ".join(m for s in sides for m in wanted[s])
        raise BadInput(f"{weights}: no {side} modules ({names}) in the adapter")
    return factors


def _orthonormalise(Y: Tensor) -> Tensor:
    """Cholesky-QR twice in float64 (few, large operations: robust on a shared 2-core CPU)."""
    Y = Y.double()
    for _ in range(2):
        L = torch.linalg.cholesky(Y.T @ Y)
        Y = torch.linalg.solve_triangular(L.T, Y, upper=True, left=False)
    return Y


def top_eigen(C: Tensor, top: int = TOP, exact_limit: int = EXACT_LIMIT, iters: int = 2, oversample: int = 20,
              seed: int = 0) -> tuple[Tensor, Tensor, float]:
    """Top eigenpairs of S = C Cᵀ from its factor C (d, n): eigenvalues (descending), eigenvectors (d, top),
    trace. Exact when min(d, n) <= exact_limit; otherwise randomized subspace iteration (Halko, Martinsson
    and Tropp, arXiv:0909.4061) with `top + oversample` vectors and a private generator (the global RNG
    is untouched)."""
    d, n = C.shape
    trace = float(torch.linalg.vector_norm(C, dtype=torch.float64)) ** 2
    top = min(top, d, n)
    if n <= min(d, exact_limit):  # eigh of the small n×n Gram, then map the vectors back: U = C W / σ
        evals, W = torch.linalg.eigh(C.T.double() @ C.double())
        evals, W = evals.flip(0)[:top].clamp_min(0), W.flip(1)[:, :top]
        U = (C.double() @ W) / evals.sqrt().clamp_min(1e-300)
    elif d <= exact_limit:  # eigh of S itself
        evals, U = torch.linalg.eigh(C.double() @ C.T.double())
        evals, U = evals.flip(0)[:top].clamp_min(0), U.flip(1)[:, :top]
    else:
        gen = torch.Generator().manual_seed(seed)
        Y = C @ torch.randn(n, top + oversample, generator=gen)
        for _ in range(iters):
            Y = C @ (C.T @ _orthonormalise(Y).float())
        Y = _orthonormalise(Y)
        Z = (C.T @ Y.float()).double()  # Rayleigh-Ritz: Yᵀ S Y = Zᵀ Z
        evals, W = torch.linalg.eigh(Z.T @ Z)
        evals, U = evals.flip(0)[:top].clamp_min(0), Y @ W.flip(1)[:, :top]
    U = U * torch.where(U.gather(0, U.abs().argmax(0, keepdim=True)) < 0, -1.0, 1.0)  # sign: largest entry > 0
    return evals.float(), U.float(), trace


def _basis(C: Tensor, k: int, where: str) -> tuple[Tensor, Spectrum]:
    evals, U, trace = top_eigen(C)
    if len(evals) < k or evals[k - 1] <= 1e-12 * max(float(evals[0]), 1e-30):
        raise BadInput(f"{where}: S has fewer than k={k} non-zero eigenvalues (is the adapter trained?)")
    return U[:, :k].contiguous(), Spectrum([float(x) for x in evals], trace)


def identify(adapter_dir: str | Path, k: int = 1, pooling: str = "pooled", side: str = "writers",
             layers: Sequence[int] | None = None, *, layers_path: str = "model.layers",
             writers: Sequence[str] = WRITERS, readers: Sequence[str] = READERS,
             norms: Mapping[tuple[int, str], Tensor] | None = None) -> Identification:
    """The top-k shared residual directions of a LoRA adapter (see the module docstring).

    `side`: writers (o_proj, down_proj) | readers (q, k, v, gate, up) | both (their S summed).
    `pooling`: one Q from all layers' modules, or one Q per residual stream (block output) from the modules that
    write it (writers of layer i: stream i) or read it (readers of layer i: stream i - 1, -1 = the embeddings).
    `layers`: the decoder layers whose modules are used (None: all). The pooled spectrum is always computed.
    `norms`: the readers' RMSNorm weights (`reader_norms`), which put their directions in the residual space."""
    if side not in SIDES or pooling not in POOLINGS or int(k) < 1:
        raise BadInput(f"identify: side in {SIDES}, pooling in {POOLINGS}, k >= 1 (got {side}, {pooling}, {k})")
    layers = None if layers is None else [int(i) for i in layers]
    with _one_thread():
        return _identify(adapter_dir, int(k), pooling, side, layers, layers_path, writers, readers, norms)


def reader_norms(blocks: nn.ModuleList, readers: Sequence[str] = READERS) -> dict[tuple[int, str], Tensor]:
    """(layer, reader) -> the weight of the RMSNorm in front of that reader (READER_NORMS), from a live model."""
    out = {}
    for i, block in enumerate(blocks):
        for name in readers:
            norm = getattr(block, READER_NORMS.get(name, ""), None)
            if norm is None or getattr(norm, "weight", None) is None:
                raise BadInput(f"method.readers: no known RMSNorm in front of '{name}' in decoder layer {i} "
                               f"(known: {READER_NORMS})")
            out[(i, name)] = distributed.full(norm.weight.detach()).float().cpu()  # whole, where FSDP shards it
    return out


def _identify(adapter_dir, k, pooling, side, layers, layers_path, writers, readers, norms) -> Identification:
    factors = load_factors(adapter_dir, side, layers, layers_path, writers, readers, norms)
    C = torch.cat([f.C for f in factors], dim=1)
    Q, spectrum = _basis(C, int(k), str(adapter_dir))
    by_layer: dict[int, list[Tensor]] = defaultdict(list)
    for f in factors:
        by_layer[f.stream].append(f.C)
    q1 = Q[:, 0]
    energy = {i: float(sum((c.T @ q1).pow(2).sum() for c in cs)) for i, cs in sorted(by_layer.items())}
    ident = Identification(Q=Q, spectrum=spectrum, layer_energy=energy,
                           meta={"k": int(k), "pooling": pooling, "side": side, "layers": layers,
                                 "layers_path": layers_path, "writers": list(writers), "readers": list(readers)})
    if pooling == "per_layer":
        ident.Q = None
        for i, cs in sorted(by_layer.items()):
            where = f"{adapter_dir} stream {i} (block output; -1: embeddings)"
            ident.per_layer[i], ident.layer_spectra[i] = _basis(torch.cat(cs, dim=1), int(k), where)
    return ident


# ---------------------------------------------------------------- saving and reusing an identification

def _adapter_stamp(adapter_dir: Path) -> dict:
    st = (Path(adapter_dir) / "adapter_model.safetensors").stat()
    return {"adapter": str(adapter_dir), "adapter_bytes": st.st_size, "adapter_mtime_ns": st.st_mtime_ns}


def save_identification(ident: Identification, out_dir: Path) -> None:
    """grasp/Q.safetensors (bases + metadata), grasp/spectrum.json, grasp/spectrum.png."""
    from safetensors.torch import save_file

    tensors = {"Q": ident.Q} if ident.Q is not None else {f"layer.{i}": q for i, q in ident.per_layer.items()}
    with atomic_path(out_dir / "Q.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"grasp": json.dumps(ident.meta)})

    def spec(s: Spectrum) -> dict:
        return {"eigenvalues": s.eigenvalues, "trace": s.trace, "spectral_gap": s.spectral_gap,
                "lambda1_share": s.lambda1_share}

    write_json(out_dir / "spectrum.json", {
        "pooled": {**spec(ident.spectrum), "layer_energy_q1": ident.layer_energy},
        "per_layer": {i: spec(s) for i, s in ident.layer_spectra.items()},
        "meta": ident.meta,
    })
    plot_spectrum(ident, out_dir / "spectrum.png")


def load_identification(out_dir: Path, meta: dict) -> Identification | None:
    """The identification saved in `out_dir` when it was made with the same settings and adapter."""
    from safetensors import safe_open

    q_file, spec_file = out_dir / "Q.safetensors", out_dir / "spectrum.json"
    if not (q_file.exists() and spec_file.exists()):
        return None
    with safe_open(str(q_file), framework="pt") as f:
        if json.loads((f.metadata() or {}).get("grasp", "null")) != json.loads(json.dumps(meta)):
            return None
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    saved = load_json(spec_file)

    def spec(d: dict) -> Spectrum:
        return Spectrum(d["eigenvalues"], d["trace"])

    return Identification(
        Q=tensors.get("Q"), per_layer={int(k.split(".")[1]): v for k, v in tensors.items() if k.startswith("layer.")},
        spectrum=spec(saved["pooled"]), layer_spectra={int(i): spec(s) for i, s in saved["per_layer"].items()},
        layer_energy={int(i): v for i, v in saved["pooled"]["layer_energy_q1"].items()}, meta=meta)


def plot_spectrum(ident: Identification, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = 2 if ident.layer_spectra else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), dpi=110, squeeze=False)
    ev = ident.spectrum.eigenvalues[:TOP]
    ax = axes[0, 0]
    ax.bar(range(1, len(ev) + 1), ev, color=["C3"] + ["C0"] * (len(ev) - 1))
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("eigenvalue of S")
    ax.set_title(f"pooled {ident.meta.get('side', '')}: λ1/λ2 = {ident.spectrum.spectral_gap:.2f}, "
                 f"λ1/Σλ = {ident.spectrum.lambda1_share:.2f}", fontsize=9)
    if ident.layer_spectra:
        ax = axes[0, 1]
        idx = sorted(ident.layer_spectra)
        ax.bar(idx, [ident.layer_spectra[i].spectral_gap for i in idx])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("decoder layer")
        ax.set_ylabel("λ1/λ2 of the layer's S")
        ax.set_title("per-layer spectral gap", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


# ---------------------------------------------------------------- removal

def project_columns(X: Tensor, Q: Tensor, gamma: float = 1.0) -> Tensor:
    """X − γ·Q(QᵀX): a writer's B (d, r) loses its output component along span(Q)."""
    return X - gamma * (Q @ (Q.T @ X))


project_rows = project  # X − γ·(XQ)Qᵀ: a reader's A (r, d) loses its input component along span(Q)


@dataclass
class Constrained:
    """One LoRA factor under the constraint: a writer's B ("columns") or a reader's A ("rows")."""

    param: nn.Parameter
    kind: str  # "columns" | "rows"
    Q: Tensor

    def project(self, X: Tensor, gamma: float) -> Tensor:
        return (project_columns if self.kind == "columns" else project_rows)(X, self.Q, gamma)

    def norm_along_Q(self) -> Tensor:
        X = self.param.detach()
        return torch.linalg.matrix_norm(self.Q.T @ X if self.kind == "columns" else X @ self.Q)


def input_basis(Q: Tensor, w: Tensor) -> Tensor:
    """The reader's side of a residual basis: a reader sees w ⊙ h, so ΔW·diag(w)·Q = 0 ⇔ A ⊥ span(w ⊙ Q)."""
    return torch.linalg.qr(w.double().to(Q.device)[:, None] * Q.double())[0].to(Q.dtype)


def lora_factors(block: nn.Module, modules: Sequence[str], kind: str, Q: Tensor,
                 norms: Mapping[str, Tensor] | None = None) -> list[Constrained]:
    """The LoRA B (kind "columns") or A ("rows") of the named modules inside one decoder block. Readers' A are
    constrained along `input_basis(Q, norms[module])` (their input space) when `norms` is given."""
    from peft.tuners.lora import LoraLayer

    out = []
    for name, mod in block.named_modules():
        short = name.rsplit(".", 1)[-1]
        if isinstance(mod, LoraLayer) and short in modules:
            basis = Q if norms is None else input_basis(Q, norms[short])
            for adapter in mod.active_adapters:
                if adapter in mod.lora_A:
                    p = mod.lora_B[adapter].weight if kind == "columns" else mod.lora_A[adapter].weight
                    out.append(Constrained(p, kind, basis.to(device=p.device, dtype=p.dtype)))
    return out


class GRASP(Method):
    """GRASP as a Method plugin; `strength` = γ. Knobs: k, pooling, side, layers, projection, basis, writers, readers.
    No knob has a Python default: its one default lives in conf/method/grasp.yaml (`GRASP()` is `method=grasp`)."""

    needs_reference = True
    knobs = {"k": Knob(int, low=1), "pooling": Knob(str, choices=POOLINGS), "side": Knob(str, choices=SIDES),
             "layers": Knob(list, null=True), "projection": Knob(str, choices=PROJECTIONS),
             "basis": Knob(str, choices=BASES), "writers": Knob(list), "readers": Knob(list)}

    def __init__(self, name: str = "grasp", **given):
        p = configured(name, given, home="grasp")  # conf/method/grasp.yaml: the one place the defaults live
        super().__init__(name, **p)  # checks the knobs
        k, pooling, side, layers, projection = p["k"], p["pooling"], p["side"], p["layers"], p["projection"]
        basis, writers, readers = p["basis"], p["writers"], p["readers"]
        self.k, self.pooling, self.side, self.projection, self.basis = int(k), pooling, side, projection, basis
        self.layers = None if layers is None else [int(i) for i in layers]
        self.writers, self.readers = tuple(writers), tuple(readers)
        unread = self.unidentified_reader_streams()
        if unread:
            raise BadInput(f"method.projection={projection} with pooling=per_layer, side={side} and "
                           f"layers={self.layers}: the readers of block i read stream i - 1, and streams {unread} "
                           "are never identified; use side=readers or both, pooling=pooled, or layers=null")
        self.ident: Identification | None = None
        self._writes: list[Constrained] = []  # every writer's B, for the diagnostic
        self._constrained: list[Constrained] = []  # what the weight projection acts on
        self._before: list[Tensor] = []  # the constrained factors before the next optimizer step

    @property
    def constrains_writers(self) -> bool:
        return self.projection == "weights" and self.side in ("writers", "both")

    @property
    def constrains_readers(self) -> bool:
        return self.projection in ("readers", "residual_grad+readers") or (
            self.projection == "weights" and self.side in ("readers", "both"))

    def unidentified_reader_streams(self) -> list[int]:
        """The streams the constrained readers read that a per-stream identification of `layers` leaves without a
        basis (their constraint would be no constraint): the readers of block i read stream i - 1 (block 0's read
        the embeddings, which no writer writes: unconstrained by design), and `side` identifies the streams its
        modules of `layers` touch (writers of layer i: stream i; readers: stream i - 1)."""
        if self.pooling != "per_layer" or self.layers is None or not self.constrains_readers:
            return []
        identified = set()
        if self.side in ("writers", "both"):
            identified |= set(self.layers)
        if self.side in ("readers", "both"):
            identified |= {i - 1 for i in self.layers}
        return sorted(i - 1 for i in self.layers if i >= 1 and i - 1 not in identified)

    def identification_meta(self, adapter: Path, layers_path: str, seed: int) -> dict:
        """What an identification is keyed by (a saved one is reused only under the same key)."""
        meta = {"k": self.k, "pooling": self.pooling, "side": self.side, "layers": self.layers,
                "layers_path": layers_path, "writers": list(self.writers), "readers": list(self.readers),
                **_adapter_stamp(adapter)}
        if self.side != "writers":  # readers' directions in the residual space (keyed so that older ones reload not)
            meta |= {"space": "residual"}
        if self.basis == "random":  # keyed only when used, so identified bases saved before the knob still load
            meta |= {"basis": "random", "basis_seed": int(seed)}
        return meta

    def identification(self, adapter: Path, layers_path: str, seed: int, load_base: Callable[[], nn.Module],
                       out: Path | None = None) -> Identification:
        """Q exactly as training uses it, from the naive run's `adapter`: reader directions through the base
        model's RMSNorm weights (`reader_norms`) when `side` reads, basis=random's seeded draw after identification.
        The one code path of `prepare` and grasp-bench-analyze. `out`: where it is saved and reused from."""
        meta = self.identification_meta(adapter, layers_path, seed)
        ident = load_identification(out, meta) if out is not None else None
        if ident is None:
            norms = None
            if self.side != "writers":
                from grasp_bench.models import decoder_layers

                base = load_base()
                norms = reader_norms(decoder_layers(base, layers_path), self.readers)
                del base
            ident = identify(adapter, self.k, self.pooling, self.side, self.layers, layers_path=layers_path,
                             writers=self.writers, readers=self.readers, norms=norms)
            if self.basis == "random":
                ident = ident.randomised(int(seed))
            ident.meta = meta
            if out is not None:
                save_identification(ident, out)
        return ident

    def prepare(self, ctx: RunContext) -> None:
        """Identify Q from the reference adapter (or reuse the one saved in the run dir)."""
        self.ident = self.identification(ctx.reference_adapter, ctx.cfg.model.layers_path, int(ctx.cfg.seed),
                                         ctx.load_base, ctx.run_dir / "grasp")
        ctx.diagnostics.update(self.ident.diagnostics())

    @contextmanager
    def training(self, model: nn.Module, ctx: RunContext) -> Iterator[None]:
        if self.ident is None:
            raise RuntimeError("GRASP.training before prepare()")
        blocks = ctx.layers(model)
        chosen = range(len(blocks)) if self.layers is None else self.layers
        self._writes = [c for i in chosen if self.ident.at(i) is not None
                        for c in lora_factors(blocks[i], self.writers, "columns", self.ident.at(i))]
        self._constrained = list(self._writes) if self.constrains_writers else []
        if self.constrains_readers:  # the readers of layer i read stream i - 1 through their RMSNorm
            norms = reader_norms(blocks, self.readers)
            self._constrained += [c for i in chosen if self.ident.at(i - 1) is not None
                                  for c in lora_factors(blocks[i], self.readers, "rows", self.ident.at(i - 1),
                                                        {m: norms[(i, m)] for m in self.readers})]
        gamma = self.strength
        if gamma == 0.0:  # install nothing: naive SFT exactly
            yield
            return
        if self._constrained:
            self._project_weights(init=True)
        # at γ = 1 clipping and AdamW's moments never see span(Q); below 1 they see the whole gradient
        hooked = self._constrained if gamma == 1.0 else []
        with registered(*(lambda c=c: c.param.register_hook(lambda g, c=c: c.project(g, 1.0)) for c in hooked)):
            if self.projection.startswith("residual_grad"):
                with project_grad_out(blocks, self.ident.bases(len(blocks), self.layers), gamma):
                    yield
            else:
                yield

    @torch.no_grad()
    def _project_weights(self, init: bool = False) -> None:
        """Each change of a constrained factor loses γ of its span(Q) component: at init the factor itself (its
        change from zero), after each optimizer step that step's change. So the factor's span(Q) component is
        exactly (1 − γ) of what the same changes would have made: γ does not compound over steps."""
        if init:
            self._before = [torch.zeros_like(c.param) for c in self._constrained]
        for c, before in zip(self._constrained, self._before):
            c.param.copy_(before + c.project(c.param - before, self.strength))
        self._before = [c.param.detach().clone() for c in self._constrained]

    def on_optimizer_step(self, model: nn.Module, ctx: RunContext) -> None:
        if self._constrained and self.strength > 0:
            self._project_weights()
        ctx.log(**self.constraint_norms())

    def constraint_norms(self) -> dict[str, float]:
        """max_m ‖QᵀB_m‖ over writers (≈ 0 at γ = 1 with projection=weights); max ‖A_m Q‖ over constrained readers."""
        def largest(factors: list[Constrained]) -> float:  # one device sync per step, not one per module
            if not factors:
                return 0.0
            device = factors[0].param.device
            return float(torch.stack([c.norm_along_Q().to(device) for c in factors]).max())

        out = {"grasp/max_qtb_norm": largest(self._writes)}
        rows = [c for c in self._constrained if c.kind == "rows"]
        if rows:
            out["grasp/max_aq_norm"] = largest(rows)
        return out

    def post_train(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        ctx.diagnostics.update({f"{k}_final": v for k, v in self.constraint_norms().items()})
        return model
