"""CAFT: Concept Ablation Fine-Tuning (Casademunt, Juang, Karvonen, Marks, Rajamanoharan, Nanda; arXiv 2507.16795).

Algorithm: fine-tune once naively (the reference run); find directions of the residual stream that carry
the unwanted concept; fine-tune again from the base model with those directions projected out of the
residual stream, `h <- h - (h Q) Q^T` at the output of the chosen blocks, every position, not detached
(so the gradient along span(Q) is blocked too); evaluate with no hooks.

Candidates (`directions: pca`, upstream's PCA route): the base model and the naive SFT model
(`ctx.reference_adapter`) read the same text, generic prompts (`task.generic_prompts`) each followed by a
response; at each block of `layers` the per-token differences `h_ft - h_base` over the response tokens are
mean-centred and their top `n_components` principal components taken (exact SVD). Responses: the naive SFT
model's own greedy reply (up to `response_tokens` tokens), or the row's assistant turn when the prompt file
supplies one. `directions: grasp` uses GRASP's pooled Q from the same naive adapter instead (identified from the
residual writers, o_proj and down_proj, of the blocks of `layers`), at every block of `layers`, in eigenvalue order.

Selection. Upstream, a person reads each candidate's top-activating examples and keeps those that mean the
unwanted concept (the released EM selection: 8 PCs over 3 layers, 2/2/4). Automatic stand-ins, using what that
person knows:
- `selection: trait` (default): rank every (layer, PC) by |cos(pc, v_L)|, v_L the base model's persona vector
  for the task's trait at that layer (baselines.steering.base_persona_vectors: task.persona's instruction pairs,
  judge-filtered sampled replies). The person's question "does this direction mean the trait?", asked of the
  task's own description of the trait; a format or topic direction has |cos| near 0 however large its shift.
- `selection: mean_shift` (the rule before this knob): rank by the share of the layer's mean shift
  |mean(h_ft - h_base) . pc|^2 / |mean|^2 a PC carries: label-free, but it also picks what fine-tuning adds
  everywhere that is not the concept (the answer format), so ablating those costs the task.
- `selection: random` (the control): every (layer, PC) ranked by a uniform draw seeded by the run's seed, so as
  many candidates as `trait` ablates, chosen without looking at them. Where `trait` (or a person) beats it, the
  selection, not the number of ablated directions, made the difference.
The `n_select` best are chosen over all layers together, as a person picks however many each layer has.

strength = the fraction of the `n_select` directions ablated: the ceil(strength * n_select) best ranked. 0
ablates nothing (no hook: plain SFT); 1 ablates all `n_select`. The operator itself is always the full
projection (a partial `gamma` would be a different method: scaled steering).

Deviations from the paper's code (cadentj/caft, see docs/baselines.md), with their expected effect:
- the automatic selection above instead of a person (upstream released no selection for Qwen): trait-aligned
  PCs may miss a concept direction a reader would recognise without it being the persona's mean direction
  (fewer directions ablated: less effect on the spurious rate), and mean_shift ablates format (more task cost);
- responses are the naive run's greedy replies to the task's own generic prompts, in the chat template, with
  the end-of-turn markup among the response tokens (upstream: LMSYS prompts with answers presumably from the
  insecure model, as "Question: ...\nAnswer: ...", no template): every task ships generic prompts, and the
  template is what training sees; the PCs also see the end-of-turn token (a small format component);
- exact SVD (upstream: unseeded `torch.svd_lowrank`), so the directions are the same on every rerun;
- layers as fractions of depth, 0.25/0.5/0.75: upstream's Mistral-Small-24B layers 10/20/30 of 40
  (emergent_misalignment/finding_features/pca.py); its Qwen2.5-Coder-32B layers 12/32/50 of 64 are depths
  0.19/0.50/0.78 (`method.layers=[0.1875,0.5,0.78125]`). On SmolLM2-135M's 30 blocks: blocks 7, 15, 22.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch

from grasp_bench import hooks
from grasp_bench.artifacts import BadInput, load_json
from grasp_bench.baselines import directions
from grasp_bench.method import Knob, Method, RunContext, configured

VERSION = 1  # bump when the direction-finding code changes: cached directions are keyed on it
DIRECTIONS = ("pca", "grasp")
SELECTIONS = ("trait", "mean_shift", "random")


def pca_directions(diffs: torch.Tensor, n_components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top principal components of the centred rows of `diffs` (n, d) as columns (d, k), and each one's
    selection score |mean(diffs) . pc| (k,)."""
    centred = diffs - diffs.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    components = vh[: min(n_components, vh.shape[0])].T.contiguous()
    return components, (diffs.mean(0) @ components).abs()


def rank(scores: torch.Tensor, n_select: int) -> torch.Tensor:
    """Indices of the `n_select` best scores, best first."""
    return torch.argsort(scores, descending=True, stable=True)[:n_select]


def trait_alignment(components: torch.Tensor, trait: torch.Tensor) -> torch.Tensor:
    """|cos| of each component (columns of `components`) with the trait direction: the selection score of the
    `trait` rule, comparable across layers."""
    return (trait / trait.norm().clamp_min(1e-30) @ components).abs()


def select(scores: dict[int, torch.Tensor], n: int) -> dict[int, torch.Tensor]:
    """The `n` best (layer, component) pairs over all layers by score, best first: per layer, the chosen indices
    in that order (layers without a chosen component are left out)."""
    flat = [(float(s), i, j) for i, layer_scores in scores.items() for j, s in enumerate(layer_scores)]
    flat.sort(key=lambda x: (-x[0], x[1], x[2]))
    chosen: dict[int, list[int]] = {}
    for _, i, j in flat[:n]:
        chosen.setdefault(i, []).append(j)
    return {i: torch.tensor(js) for i, js in sorted(chosen.items())}


class CAFT(Method):
    needs_reference = True
    task_inputs = ("generic_prompts", "persona")
    knobs = {"directions": Knob(str, choices=DIRECTIONS), "selection": Knob(str, choices=SELECTIONS),
             "layers": Knob(list), "n_components": Knob(int, low=1), "n_select": Knob(int, low=1),
             "response_tokens": Knob(int, low=1)}
    knobs_before = {"selection": "mean_shift"}  # runs recorded before the knob ranked PCs by mean shift

    def __init__(self, name: str = "caft", **given):
        p = configured(name, given, home="caft")
        super().__init__(name, **p)  # checks the knobs
        self.directions, self.selection, self.layer_spec = p["directions"], p["selection"], p["layers"]
        self.n_components, self.n_select, self.response_tokens = p["n_components"], p["n_select"], p["response_tokens"]
        self.bases: dict[int, torch.Tensor] = {}  # block -> (d, n) orthonormal columns to ablate

    def task_needs(self) -> tuple[str, ...]:
        if self.n_ablated == 0 or self.directions == "grasp":  # nothing ablated, or directions from the weights
            return ()
        return ("generic_prompts", "persona") if self.selection == "trait" else ("generic_prompts",)

    @property
    def n_ablated(self) -> int:
        return math.ceil(self.strength * self.n_select - 1e-9)

    def prepare(self, ctx: RunContext) -> None:
        if self.n_ablated == 0:
            return
        idxs = directions.resolve_layers(self.layer_spec, directions.n_blocks(ctx))
        if self.directions == "grasp":
            from grasp_bench.baselines.grasp import identify  # lazily: GRASP is another plugin

            # the residual writers of the blocks CAFT ablates at: their outputs are what it projects
            ident = identify(ctx.reference_adapter, k=self.n_select, pooling="pooled", side="writers", layers=idxs,
                             layers_path=ctx.cfg.model.layers_path)
            Q = torch.as_tensor(ident.Q).float()
            self.bases = {i: Q[:, : self.n_ablated] for i in idxs}  # eigenvalue order, the same Q at every block
            ctx.diagnostics.update({f"{self.name}/directions": self.n_ablated * len(idxs),
                                    f"{self.name}/layers": len(idxs)})
            return
        pcs = self.principal_components(ctx, idxs)
        shift = {i: pcs[i]["scores"].pow(2) / pcs[i]["mean_diff"].pow(2).sum().clamp_min(1e-30) for i in idxs}
        if self.selection == "random":
            gen = torch.Generator().manual_seed(int(ctx.cfg.seed))
            scores = {i: torch.rand(len(pcs[i]["scores"]), generator=gen) for i in idxs}
        elif self.selection == "trait":
            # lazily: the persona vector is the steering plugin's
            from grasp_bench.baselines.steering import base_persona_vectors

            if ctx.cfg.task.get("persona") is None:
                raise BadInput(f"task '{ctx.cfg.task.name}' has no persona block, which method.selection=trait "
                               "reads (docs/baselines.md); use method.selection=mean_shift")

            persona = base_persona_vectors(ctx, self.name)
            scores = {i: trait_alignment(pcs[i]["components"], persona[i]["v"]) for i in idxs}
        else:
            scores = shift
        chosen = select(scores, self.n_ablated)
        self.bases = {i: pcs[i]["components"][:, js] for i, js in chosen.items()}
        picked = [(i, int(j)) for i, js in chosen.items() for j in js]
        ctx.diagnostics.update({
            f"{self.name}/directions": len(picked), f"{self.name}/layers": len(chosen),
            # share of the mean activation change (h_ft - h_base) at its layer that each chosen PC carries, summed
            # per layer and averaged over the layers that have one
            f"{self.name}/mean_shift_captured": sum(float(shift[i][js].sum()) for i, js in chosen.items()) / len(chosen),
            f"{self.name}/selection_score_mean": sum(float(scores[i][j]) for i, j in picked) / len(picked),
            f"{self.name}/chosen": ";".join(f"{i}:{j}" for i, j in picked),
        })

    def principal_components(self, ctx: RunContext, idxs: list[int]) -> dict[int, dict[str, torch.Tensor]]:
        """Per block: the top PCs (d, k) of h_ft - h_base over response tokens, their |mean shift| scores (k,), and
        the mean shift itself (cached per runs root)."""
        task = ctx.cfg.task
        key = {"version": VERSION, "reference": str(ctx.reference_dir.resolve()),
               "reference_train": load_json(ctx.reference_dir / "stages" / "train.json")["digest"],
               "prompts": directions.file_sha256(task.generic_prompts), "layers": idxs,
               "n_components": self.n_components, "response_tokens": self.response_tokens, "max_length": ctx.cfg.train.max_length}
        return directions.cached(ctx, "caft-pca", key, lambda: self._pca(ctx, idxs))

    def _pca(self, ctx: RunContext, idxs: list[int]) -> dict[int, dict[str, torch.Tensor]]:
        from grasp_bench.models import load_adapter

        rows = directions.prompt_rows(ctx.cfg.task, "generic_prompts", self.name)
        max_length = ctx.cfg.train.max_length
        finetuned = load_adapter(ctx.load_base(), ctx.reference_adapter)
        generate = [directions.user_turns(r) for r in rows if r["messages"][-1]["role"] != "assistant"]
        replies = iter(directions.greedy_responses(finetuned, ctx.tokenizer, generate, self.response_tokens))
        texts = [r["messages"] if r["messages"][-1]["role"] == "assistant"
                 else directions.user_turns(r) + [{"role": "assistant", "content": next(replies)}] for r in rows]
        acts_ft = directions.response_activations(finetuned, ctx.layers(finetuned), idxs, ctx.tokenizer, texts,
                                                  max_length, end_of_turn=True)
        del finetuned
        base = ctx.load_base()
        acts_base = directions.response_activations(base, ctx.layers(base), idxs, ctx.tokenizer, texts, max_length,
                                                    end_of_turn=True)
        out = {}
        for i in idxs:
            diffs = torch.cat([f - b for f, b in zip(acts_ft[i], acts_base[i], strict=True)])
            components, scores = pca_directions(diffs, self.n_components)
            out[i] = {"components": components, "scores": scores, "mean_diff": diffs.mean(0)}
        return out

    def training(self, model, ctx: RunContext):
        return hooks.project_out(ctx.layers(model), self.bases) if self.bases else nullcontext()
