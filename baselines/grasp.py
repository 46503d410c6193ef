"""GRASP, gradient projection of associated spurious patterns (arXiv:2605.27676), as reconstructed by this
project from the paper's abstract (the full text was not available).

Identification, from the naive SFT run's LoRA adapter and without labels (`identify`):
    S = Σ_m ΔW_m ΔW_mᵀ = Σ_m s² B_m (A_m A_mᵀ) B_mᵀ      over residual *writers* (o_proj, down_proj)
    S = Σ_m ΔW_mᵀ ΔW_m = Σ_m s² A_mᵀ (B_mᵀ B_m) A_m      over residual *readers* (q, k, v, gate, up)
and Q = its top-k eigenvectors, pooled over layers or one Q per decoder layer. S is never formed: it is
S = C Cᵀ with C = [s·B_m·L_m] (L_m L_mᵀ = A_m A_mᵀ, r×r), and Q comes from C (an exact decomposition on
the small side, or a seeded randomized subspace iteration when both sides are large). A gap between λ1
and λ2 is the evidence that one shared factor exists.

Removal, in a second LoRA run from the base model with the same data and hyperparameters (`GRASP`):
- `projection=weights`: writers B ← B − γ·Q(QᵀB), readers A ← A − γ·(AQ)Qᵀ, at LoRA init and after every
  optimizer step (with Adam, projecting gradients alone does not keep the update out of span(Q)), and
  the gradients too (tensor hooks), so that clipping and Adam's statistics see the projected gradient.
  Base weights and activations are untouched: pretrained content along Q survives (unlike CAFT).
  For γ < 1 the Q-component of the LoRA factors shrinks by (1 − γ) per step: a soft constraint.
- `projection=residual_grad`: the forward pass is untouched; the gradient flowing back into the residual
  stream at each decoder block output loses its component in span(Q) (`hooks.project_grad_out`).
`strength` = γ; γ = 0 installs nothing and reproduces naive SFT bit for bit.
`basis=random` is the control: the same removal along random orthonormal bases of the same shapes, to
tell the identified directions apart from merely blocking k directions per layer.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import median

import torch
from torch import Tensor, nn

from grasp_bench.artifacts import BadInput, atomic_path, int_at_least, load_json, write_json
from grasp_bench.hooks import project, project_grad_out, registered
from grasp_bench.method import Method, RunContext

WRITERS = ("o_proj", "down_proj")  # modules whose output enters the residual stream
READERS = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")  # modules that read it
SIDES, POOLINGS, PROJECTIONS = ("writers", "readers", "both"), ("pooled", "per_layer"), ("weights", "residual_grad")
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
    """The shared directions found in an adapter: a pooled basis `Q` (d, k) or one per decoder layer."""

    Q: Tensor | None  # pooled basis with orthonormal columns; None when pooling="per_layer"
    per_layer: dict[int, Tensor] = field(default_factory=dict)  # layer -> (d, k), when pooling="per_layer"
    spectrum: Spectrum | None = None  # of the pooled S (always computed: the evidence for one shared factor)
    layer_spectra: dict[int, Spectrum] = field(default_factory=dict)  # of each layer's S, when per_layer
    layer_energy: dict[int, float] = field(default_factory=dict)  # q1ᵀ S_l q1 for the pooled q1, per layer
    meta: dict = field(default_factory=dict)

    def bases(self, n_layers: int, layers: Sequence[int] | None = None) -> dict[int, Tensor]:
        """layer -> the basis that constrains that layer's modules / block output."""
        chosen = range(n_layers) if layers is None else layers
        if self.Q is not None:
            return {i: self.Q for i in chosen}
        return {i: self.per_layer[i] for i in chosen if i in self.per_layer}

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
                 readers: Sequence[str] = READERS) -> list[Factor]:
    """Read a peft adapter and return each writer's C = s·B·L (L Lᵀ = A Aᵀ) and/or each reader's
    C = s·Aᵀ·L (L Lᵀ = BᵀB), one module at a time, so only r×r and d×r pieces are ever held."""
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
             writers: Sequence[str] = WRITERS, readers: Sequence[str] = READERS) -> Identification:
    """The top-k shared residual directions of a LoRA adapter (see the module docstring).

    `side`: writers (o_proj, down_proj) | readers (q, k, v, gate, up) | both (their S summed).
    `pooling`: one Q from all layers' modules, or one Q per decoder layer from that layer's modules.
    `layers`: the decoder layers to use (None: all). The pooled spectrum is always computed."""
    if side not in SIDES or pooling not in POOLINGS or int(k) < 1:
        raise BadInput(f"identify: side in {SIDES}, pooling in {POOLINGS}, k >= 1 (got {side}, {pooling}, {k})")
    layers = None if layers is None else [int(i) for i in layers]
    with _one_thread():
        return _identify(adapter_dir, int(k), pooling, side, layers, layers_path, writers, readers)


def _identify(adapter_dir, k, pooling, side, layers, layers_path, writers, readers) -> Identification:
    factors = load_factors(adapter_dir, side, layers, layers_path, writers, readers)
    C = torch.cat([f.C for f in factors], dim=1)
    Q, spectrum = _basis(C, int(k), str(adapter_dir))
    by_layer: dict[int, list[Tensor]] = defaultdict(list)
    for f in factors:
        by_layer[f.layer].append(f.C)
    q1 = Q[:, 0]
    energy = {i: float(sum((c.T @ q1).pow(2).sum() for c in cs)) for i, cs in sorted(by_layer.items())}
    ident = Identification(Q=Q, spectrum=spectrum, layer_energy=energy,
                           meta={"k": int(k), "pooling": pooling, "side": side, "layers": layers,
                                 "layers_path": layers_path, "writers": list(writers), "readers": list(readers)})
    if pooling == "per_layer":
        ident.Q = None
        for i, cs in sorted(by_layer.items()):
            where = f"{adapter_dir} layer {i}"
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


def lora_factors(block: nn.Module, modules: Sequence[str], kind: str, Q: Tensor) -> list[Constrained]:
    """The LoRA B (kind "columns") or A ("rows") of the named modules inside one decoder block."""
    from peft.tuners.lora import LoraLayer

    out = []
    for name, mod in block.named_modules():
        if isinstance(mod, LoraLayer) and name.rsplit(".", 1)[-1] in modules:
            for adapter in mod.active_adapters:
                if adapter in mod.lora_A:
                    p = mod.lora_B[adapter].weight if kind == "columns" else mod.lora_A[adapter].weight
                    out.append(Constrained(p, kind, Q.to(device=p.device, dtype=p.dtype)))
    return out


class GRASP(Method):
    """GRASP as a Method plugin; `strength` = γ. Knobs: k, pooling, side, layers, projection, basis."""

    needs_reference = True

    def __init__(self, name: str = "grasp", strength: float = 1.0, grid: list[float] | None = None, k: int = 1,
                 pooling: str = "pooled", side: str = "writers", layers: list[int] | None = None,
                 projection: str = "weights", basis: str = "identified", writers: Sequence[str] = WRITERS,
                 readers: Sequence[str] = READERS):
        super().__init__(name, strength, grid)
        for knob, value, allowed in (("pooling", pooling, POOLINGS), ("side", side, SIDES),
                                     ("projection", projection, PROJECTIONS), ("basis", basis, BASES)):
            if value not in allowed:
                raise BadInput(f"method.{knob}={value!r}: expected one of {list(allowed)}")
        int_at_least("method.k", k, 1)
        self.k, self.pooling, self.side, self.projection, self.basis = int(k), pooling, side, projection, basis
        self.layers = None if layers is None else [int(i) for i in layers]
        self.writers, self.readers = tuple(writers), tuple(readers)
        self.ident: Identification | None = None
        self._writes: list[Constrained] = []  # every writer's B, for the diagnostic
        self._constrained: list[Constrained] = []  # what the weight projection acts on

    def prepare(self, ctx: RunContext) -> None:
        """Identify Q from the reference adapter (or reuse the one saved in the run dir); basis=random swaps in
        random orthonormal bases of the same shapes (seeded by the run's seed) after identification."""
        out = ctx.run_dir / "grasp"
        adapter = ctx.reference_adapter
        layers_path = ctx.cfg.model.layers_path
        meta = {"k": self.k, "pooling": self.pooling, "side": self.side, "layers": self.layers,
                "layers_path": layers_path, "writers": list(self.writers), "readers": list(self.readers),
                **_adapter_stamp(adapter)}
        if self.basis == "random":  # keyed only when used, so identified bases saved before the knob still load
            meta |= {"basis": "random", "basis_seed": int(ctx.cfg.seed)}
        ident = load_identification(out, meta)
        if ident is None:
            ident = identify(adapter, self.k, self.pooling, self.side, self.layers, layers_path=layers_path,
                             writers=self.writers, readers=self.readers)
            if self.basis == "random":
                ident = ident.randomised(int(ctx.cfg.seed))
            ident.meta = meta
            save_identification(ident, out)
        self.ident = ident
        ctx.diagnostics.update(ident.diagnostics())

    @contextmanager
    def training(self, model: nn.Module, ctx: RunContext) -> Iterator[None]:
        if self.ident is None:
            raise RuntimeError("GRASP.training before prepare()")
        blocks = ctx.layers(model)
        bases = self.ident.bases(len(blocks), self.layers)
        self._writes = [c for i, Q in bases.items() for c in lora_factors(blocks[i], self.writers, "columns", Q)]
        self._constrained = []
        if self.side in ("writers", "both"):
            self._constrained += self._writes
        if self.side in ("readers", "both"):
            self._constrained += [c for i, Q in bases.items() for c in lora_factors(blocks[i], self.readers, "rows", Q)]
        gamma = self.strength
        if gamma == 0.0:  # install nothing: naive SFT exactly
            yield
        elif self.projection == "residual_grad":
            with project_grad_out(blocks, bases, gamma):
                yield
        else:
            self._project_weights()
            with registered(*(lambda c=c: c.param.register_hook(lambda g: c.project(g, gamma)) for c in self._constrained)):
                yield

    @torch.no_grad()
    def _project_weights(self) -> None:
        for c in self._constrained:
            c.param.copy_(c.project(c.param, self.strength))

    def on_optimizer_step(self, model: nn.Module, ctx: RunContext) -> None:
        if self.projection == "weights" and self.strength > 0:
            self._project_weights()
        ctx.log(**self.constraint_norms())

    def constraint_norms(self) -> dict[str, float]:
        """max_m ‖QᵀB_m‖ over writers (≈ 0 at γ = 1 with projection=weights); max ‖A_m Q‖ over readers."""
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
