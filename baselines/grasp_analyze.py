"""`grasp-bench-analyze`: is GRASP's Q (arXiv:2605.27676; baselines/grasp.py) causally the spurious factor?

    grasp-bench-analyze                                         # toy_rude / smollm2_135m / seed 0, method=grasp's Q
    grasp-bench-analyze method.k=4 method.pooling=per_layer analyze.layers=[20,24] analyze.coefs=[1,2,4,8]
    python -m grasp_bench.baselines.grasp_analyze model=tiny analyze.limit=4    # without the console script

It composes the same Hydra config as `grasp-bench` (conf/analyze.yaml = config.yaml + an `analyze:` block),
so task, model, seed and the method's knobs select the naive SFT reference run whose adapter gives Q (the
reference is trained on demand, like any run's).

1. Causal check: generate with the *base* model on the task's `analyze.split` (default: unrelated) while
   adding c·v to the residual stream at the output of the chosen decoder blocks, and score with the task's
   scorer (default: factor) through the configured judge. v is +q, −q (q = the first column of Q, of each
   layer's own Q with pooling=per_layer) or a random unit vector (the control). c is in units of
   median‖h‖/√d at that layer on the same prompts (the typical size of the residual stream's component
   along one direction), so one scale fits models of any width. Q's sign from
   identification is arbitrary: q is oriented so that +q has the higher summed factor rate over the c grid
   (supervised, for reading the plot only; `flipped` in the JSON says whether it was flipped). When the
   persona direction of step 2 exists, steering along it (unit norm, same c) is the positive control:
   it shows whether this check can detect a factor direction on this model at all.
   Default layers: the `analyze.top_layers` blocks into which the adapter writes most along q
   (`layer_energy_q1`; on the toy organism one block alone barely moves the model).
2. Alignment: the cosine of q with the task's persona vector v_L (grasp_bench.baselines.steering.persona_vectors,
   the one used by the steering baselines: mean response-token activation at the output of block L under
   `task.persona.trait` minus under `task.persona.neutral`, on the first `analyze.generic_limit` of the task's
   generic_prompts, replies generated greedily by the base model). A low cosine does not mean that
   identification failed (GRASP's Q is found from weights, not from a contrast); the causal check is the test
   that counts.

Output: <paths.runs>/<task>/<model>/<method variant>/analysis/seed=<k>/{analysis.json, steering.png,
persona.safetensors (v_L per layer, when computed)}.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import hydra
import hydra.utils
import torch
from omegaconf import DictConfig, OmegaConf

from grasp_bench import models
from grasp_bench.artifacts import BadInput, atomic_path, read_jsonl, write_json
from grasp_bench.baselines.steering import instruction_pairs, persona_missing, persona_vectors
from grasp_bench.data import build_task_files, load_eval, load_rows, render_prompt
from grasp_bench.generate import HFGenerator
from grasp_bench.hooks import add_to_residual
from grasp_bench.identity import method_dirname
from grasp_bench.layout import CONF_DIR
from grasp_bench.metrics import summarise
from grasp_bench.pipeline import ensure_reference, instantiate


def analysis_dir(cfg: DictConfig) -> Path:
    return (Path(cfg.paths.runs).expanduser() / cfg.task.name / cfg.model.name / method_dirname(cfg.method)
            / "analysis" / f"seed={cfg.seed}")


def identification(cfg: DictConfig):
    """Q as the GRASP run of `cfg` trains with (`GRASP.identification`, the one code path: reader norms, random
    bases included), from the naive run's adapter; and that adapter."""
    m = cfg.method
    if "k" not in m or "pooling" not in m:
        raise BadInput(f"grasp-bench-analyze needs GRASP's knobs (method=grasp), got method={m.name}")
    method = instantiate(m, "method")
    adapter = ensure_reference(cfg) / "model"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ident = method.identification(adapter, cfg.model.layers_path, int(cfg.seed),
                                  lambda: models.load_base(cfg.model, cfg.paths.cache, device))
    return ident, adapter


@torch.no_grad()
def block_outputs(model, tokenizer, texts: list[str], batch_size: int = 8):
    """Per text: (hidden states at every block output (L, T, d), number of tokens)."""
    device = next(model.parameters()).device
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        hidden = model(**enc, output_hidden_states=True).hidden_states[1:]  # output of block L = index L + 1
        for b in range(enc["input_ids"].shape[0]):
            keep = enc["attention_mask"][b].bool()
            yield torch.stack([h[b][keep] for h in hidden]).float(), int(keep.sum())


def residual_unit(model, tokenizer, rows: list[dict], layers: list[int]) -> dict[int, float]:
    """median token ‖h‖ / √d of the residual stream at each block's output, over the prompts."""
    norms = []
    for h, _ in block_outputs(model, tokenizer, [render_prompt(tokenizer, r["messages"]) for r in rows]):
        norms.append(h[layers].norm(dim=-1))  # (len(layers), T)
    allnorms, d = torch.cat(norms, dim=1), h.shape[-1]
    return {layer: float(allnorms[i].median()) / d ** 0.5 for i, layer in enumerate(layers)}


def factor_rate(model, tokenizer, rows, cfg, a_cfg, judge, scorer_spec, work: Path, tag: str) -> tuple[dict, list[str]]:
    sampling = {**OmegaConf.to_container(cfg.task.sampling, resolve=True)}
    if a_cfg.max_new_tokens is not None:
        sampling["max_new_tokens"] = int(a_cfg.max_new_tokens)
    gens_path, judged = work / f"{tag}.jsonl", work / f"{tag}.judged.jsonl"
    # transformers in process whatever generator the runs used; its batch as theirs, else the hf generator's default
    batch = cfg.generator.get("batch_size") or OmegaConf.load(CONF_DIR / "generator" / "hf.yaml").batch_size
    HFGenerator(batch_size=int(batch)).run(model, tokenizer, rows, sampling, gens_path, cfg.seed)
    gens = read_jsonl(gens_path)
    judge.run(gens, {a_cfg.split: {a_cfg.scorer: scorer_spec}}, judged)
    scores = [j["score"] for j in read_jsonl(judged)]
    stats = summarise("rate", scores)
    by_id = {g["id"]: g["completion"] for g in gens}
    return {"rate": stats["rate"], "ci_low": stats["rate_ci_low"], "ci_high": stats["rate_ci_high"],
            "n": stats["rate_n"], "n_unscored": stats["rate_n_unscored"]}, [by_id[r["id"]] for r in rows]


def persona_direction(model, blocks, tokenizer, a_cfg, cfg) -> dict[int, torch.Tensor] | None:
    """v_L at every block (steering.persona_vectors: the task's instruction pairs, judge-filtered sampled replies of
    `analyze.persona_tokens` tokens to the first `analyze.generic_limit` generic prompts); None when the task has no
    complete persona block or no generic prompts."""
    persona, path = cfg.task.get("persona"), cfg.task.get("generic_prompts")
    if persona_missing(persona) or not path or not Path(path).is_file():
        return None
    prompts = [[m for m in r["messages"] if m["role"] != "system"] for r in load_rows(path, a_cfg.generic_limit)]
    found = persona_vectors(model, blocks, list(range(len(blocks))), tokenizer, prompts, instruction_pairs(persona),
                            persona.judge, int(persona.samples), float(persona.temperature),
                            int(a_cfg.persona_tokens), int(cfg.train.max_length), seed=int(cfg.seed))
    return {layer: found[layer]["v"] for layer in found}


def alignment(bases: dict[int, torch.Tensor], persona: dict[int, torch.Tensor], layers: list[int]) -> dict:
    """cos(q, v_L) per layer; for k > 1 also ‖Qᵀ v̂_L‖, the cosine of v_L with span(Q)."""
    cos = {layer: float(torch.nn.functional.cosine_similarity(bases[layer][:, 0].float(), v, dim=0))
           for layer, v in persona.items() if layer in bases}
    span = {layer: float((bases[layer].float().T @ torch.nn.functional.normalize(v, dim=0)).norm())
            for layer, v in persona.items() if layer in bases}
    best = max(cos, key=lambda layer: abs(cos[layer]))
    return {"cos_by_layer": cos, "span_cos_by_layer": span, "cos_at_steered_layers": {i: cos[i] for i in layers},
            "max_abs_cos": abs(cos[best]), "max_abs_cos_layer": best}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = 2 if result.get("alignment") else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), dpi=110, squeeze=False)
    ax = axes[0, 0]
    base = result["steering"]["none"]
    for direction, style in zip(result["steering"], ("", "o-", "s--", "^:", "d-."), strict=False):
        if direction == "none":
            continue
        points = [{"c": 0.0, **base}] + result["steering"][direction]
        xs, ys = [p["c"] for p in points], [p["rate"] for p in points]
        err = [[p["rate"] - p["ci_low"] for p in points], [p["ci_high"] - p["rate"] for p in points]]
        ax.errorbar(xs, ys, yerr=err, fmt=style, capsize=3, label=direction)
    ax.set_xlabel("c (in units of median ‖h‖/√d at the steered layers)")
    ax.set_ylabel(f"{result['scorer']} rate on '{result['split']}'")
    ax.set_title(f"steering the base model at layers {result['layers']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if panels == 2:
        ax = axes[0, 1]
        cos = result["alignment"]["cos_by_layer"]
        ax.bar([int(k) for k in cos], list(cos.values()))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("decoder layer")
        ax.set_ylabel("cos(q, persona direction)")
        ax.set_title("alignment with the mean-difference persona direction", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def analyze(cfg: DictConfig) -> dict:
    a_cfg = cfg.analyze
    build_task_files(cfg.task)
    ident, adapter = identification(cfg)
    tokenizer = models.load_tokenizer(cfg.model, cfg.paths.cache)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = models.load_base(cfg.model, cfg.paths.cache, device)
    blocks = models.decoder_layers(model, cfg.model.layers_path)
    splits = load_eval(cfg.task)
    if a_cfg.split not in splits or a_cfg.scorer not in cfg.task.splits[a_cfg.split].scorers:
        raise BadInput(f"analyze.split={a_cfg.split} / analyze.scorer={a_cfg.scorer}: not a split/scorer of "
                       f"task {cfg.task.name}")
    rows = splits[a_cfg.split][: a_cfg.limit]
    scorer_spec = OmegaConf.to_container(cfg.task.splits[a_cfg.split].scorers[a_cfg.scorer], resolve=True)
    judge = hydra.utils.instantiate(cfg.judge)

    bases = ident.bases(len(blocks), None)
    energy = ident.layer_energy
    layers = (list(a_cfg.layers) if a_cfg.layers is not None
              else sorted(sorted(energy, key=energy.get, reverse=True)[: int(a_cfg.top_layers)]))
    if any(layer not in bases for layer in layers):
        raise BadInput(f"analyze.layers={layers}: Q exists for layers {sorted(bases)}")
    q = {layer: bases[layer][:, 0].float() for layer in layers}
    gen = torch.Generator().manual_seed(int(a_cfg.random_seed))
    d = q[layers[0]].shape[0]
    unit = {layer: torch.nn.functional.normalize(torch.randn(d, generator=gen), dim=0) for layer in layers}
    directions = {"+q": q, "-q": {layer: -v for layer, v in q.items()}, "random": unit}
    norms = residual_unit(model, tokenizer, rows, layers)

    result = {"task": cfg.task.name, "model": cfg.model.name, "seed": cfg.seed, "reference_adapter": str(adapter),
              "method": {k: v for k, v in OmegaConf.to_container(cfg.method, resolve=True).items()
                         if k in ("k", "pooling", "side", "layers")},
              "split": a_cfg.split, "scorer": a_cfg.scorer, "n_prompts": len(rows), "layers": layers,
              "steering_unit": norms, "coefs": [float(c) for c in a_cfg.coefs],
              "spectral_gap": ident.spectrum.spectral_gap, "lambda1_share": ident.spectrum.lambda1_share,
              "alignment": None, "persona_prompts": OmegaConf.to_container(cfg.task.get("persona") or {}, resolve=True)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        persona = persona_direction(model, blocks, tokenizer, a_cfg, cfg)
        if persona is not None:
            result["alignment"] = alignment(bases, persona, layers)
            directions["persona"] = {layer: torch.nn.functional.normalize(persona[layer], dim=0) for layer in layers}
        base_stats, base_texts = factor_rate(model, tokenizer, rows, cfg, a_cfg, judge, scorer_spec, work, "none")
        steering = {"none": base_stats}
        for direction, vectors in directions.items():
            scaled = {layer: norms[layer] * v for layer, v in vectors.items()}
            curve = []
            for c in result["coefs"]:
                with add_to_residual(blocks, scaled, scale=c):
                    stats, texts = factor_rate(model, tokenizer, rows, cfg, a_cfg, judge, scorer_spec, work,
                                               f"{direction}_{c:g}")
                changed = sum(a != b for a, b in zip(texts, base_texts, strict=True)) / max(len(texts), 1)
                curve.append({"c": c, **stats, "changed_vs_unsteered": changed})
            steering[direction] = curve
    flipped = sum(p["rate"] for p in steering["-q"]) > sum(p["rate"] for p in steering["+q"])
    if flipped:  # orient q so that +q is the direction that raises the factor
        steering["+q"], steering["-q"] = steering["-q"], steering["+q"]
        if result["alignment"]:
            result["alignment"] = alignment({i: -Q for i, Q in bases.items()}, persona, layers)
    result["steering"], result["flipped"] = steering, flipped

    out = Path(a_cfg.out).expanduser() if a_cfg.out else analysis_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "analysis.json", result)
    if persona is not None:  # reusable: cosines with other Q variants, steering baselines
        from safetensors.torch import save_file

        with atomic_path(out / "persona.safetensors") as tmp:
            save_file({f"layer.{i}": v.contiguous() for i, v in persona.items()}, str(tmp))
    plot(result, out / "steering.png")
    return {**result, "out": str(out)}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="analyze")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        result = analyze(cfg)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    top = {d: max((p["rate"] for p in curve), default=float("nan")) for d, curve in result["steering"].items()
           if d != "none"}
    print(f"[grasp-bench-analyze] {result['out']}: unsteered {result['steering']['none']['rate']:.3f}; "
          + ", ".join(f"max {d} {v:.3f}" for d, v in top.items())
          + (f"; max |cos(q, persona)| {result['alignment']['max_abs_cos']:.3f}" if result["alignment"] else ""))


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
