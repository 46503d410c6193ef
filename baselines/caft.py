"""CAFT: Concept Ablation Fine-Tuning (Casademunt, Juang, Karvonen, Marks, Rajamanoharan, Nanda; arXiv 2507.16795).

Algorithm: fine-tune once naively (the reference run); find directions of the residual stream that carry
the unwanted concept; fine-tune again from the base model with those directions projected out of the
residual stream, `h <- h - (h Q) Q^T` at the output of the chosen blocks, every position, not detached
(so the gradient along span(Q) is blocked too); evaluate with no hooks.

Directions (`directions: pca`): the base model and the naive SFT model (`ctx.reference_adapter`) read the
same text, generic prompts (`task.generic_prompts`) each followed by a response; at each block of `layers`
the per-token differences `h_ft - h_base` over the response tokens are mean-centred and their top
`n_components` principal components taken (exact SVD). Responses: the naive SFT model's own greedy reply
(up to `response_tokens` tokens), or the row's assistant turn when the prompt file supplies one.
`directions: grasp` uses GRASP's pooled Q from the same naive adapter instead (identified from the residual
writers, o_proj and down_proj, of the blocks of `layers`), at every block of `layers`.

Selection (the paper reads feature displays by hand; this is our automatic stand-in): per block, rank the
PCs by |mean over response tokens of (h_ft - h_base) . pc|, the size of the systematic shift the
fine-tuned model makes along the PC, and keep the top `n_select`. A persona-like factor shows on every
generic prompt, so it shows as a shift of the mean; a PC of large variance but no consistent sign
(e.g. topic) is not what fine-tuning added everywhere. With `directions: grasp` the order is GRASP's
(eigenvalue).

strength = the fraction of the selected directions ablated: ceil(strength * n_select) per block, best
ranked first. 0 ablates nothing (no hook: plain SFT); 1 ablates all `n_select`. The operator itself is
always the full projection (a partial `gamma` would be a different method: scaled steering).

Deviations from the paper's code (cadentj/caft):
- the automatic selection rule above instead of manual interpretation: a benchmark must be reproducible
  without a human in the loop (and upstream released no selection for Qwen);
- responses are the naive run's greedy replies to the task's own generic prompts, in the chat template
  (upstream: LMSYS prompts with answers presumably from the insecure model, as "Question: ...\nAnswer: ...",
  no template): every task ships its generic prompts, and the template is what training sees;
- exact SVD (upstream: unseeded `torch.svd_lowrank`), so the directions are the same on every rerun;
- layers as fractions of depth (upstream: fixed indices for 64- and 40-layer models), so one config
  serves every model size.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch

from grasp_bench import hooks
from grasp_bench.artifacts import BadInput, int_at_least, load_json
from grasp_bench.baselines.directions import (
    cached,
    file_sha256,
    greedy_responses,
    n_blocks,
    prompt_rows,
    resolve_layers,
    response_activations,
    user_turns,
)
from grasp_bench.method import Method, RunContext

VERSION = 1  # bump when the direction-finding code changes: cached directions are keyed on it


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


class CAFT(Method):
    needs_reference = True
    task_inputs = ("generic_prompts",)

    def __init__(self, name: str = "caft", strength: float = 1.0, grid: list[float] | None = None,
                 directions: str = "pca", layers=(0.25, 0.5, 0.75), n_components: int = 20, n_select: int = 4,
                 response_tokens: int = 64):
        super().__init__(name, strength, grid)
        if directions not in ("pca", "grasp"):
            raise BadInput(f"method.directions '{directions}': expected pca or grasp")
        for knob, value in (("n_components", n_components), ("n_select", n_select), ("response_tokens", response_tokens)):
            int_at_least(f"method.{knob}", value, 1)
        if n_components < n_select:
            raise BadInput(f"method.n_select must be in [1, n_components]; got {n_select}, {n_components}")
        self.directions, self.layer_spec = directions, layers
        self.n_components, self.n_select, self.response_tokens = n_components, n_select, response_tokens
        self.bases: dict[int, torch.Tensor] = {}  # block -> (d, n) orthonormal columns to ablate

    @property
    def n_ablated(self) -> int:
        return math.ceil(self.strength * self.n_select - 1e-9)

    def prepare(self, ctx: RunContext) -> None:
        if self.n_ablated == 0:
            return
        idxs = resolve_layers(self.layer_spec, n_blocks(ctx))
        found = self.find_directions(ctx, idxs)
        self.bases = {i: found[i]["components"][:, found[i]["order"][: self.n_ablated]] for i in idxs}
        shift = [found[i]["captured"][: self.n_ablated].sum().item() for i in idxs]
        ctx.diagnostics.update({
            f"{self.name}/directions_per_layer": self.n_ablated, f"{self.name}/layers": len(idxs),
            # share of the mean activation change (h_ft - h_base) that the ablated directions carry
            f"{self.name}/mean_shift_captured": sum(shift) / len(shift),
        })

    def find_directions(self, ctx: RunContext, idxs: list[int]) -> dict[int, dict[str, torch.Tensor]]:
        """Per block: components (d, k), the selection order (best first) and, per component in that order,
        the share of |mean(h_ft - h_base)|^2 it carries."""
        if self.directions == "grasp":
            from grasp_bench.baselines.grasp import identify  # lazily: GRASP is another plugin

            # the residual writers of the blocks CAFT ablates at: their outputs are what it projects
            ident = identify(ctx.reference_adapter, k=self.n_select, pooling="pooled", side="writers", layers=idxs,
                             layers_path=ctx.cfg.model.layers_path)
            Q = torch.as_tensor(ident.Q).float()
            order = torch.arange(Q.shape[1])
            return {i: {"components": Q, "order": order, "captured": torch.full((Q.shape[1],), float("nan"))}
                    for i in idxs}
        task = ctx.cfg.task
        key = {"version": VERSION, "reference": str(ctx.reference_dir.resolve()),
               "reference_train": load_json(ctx.reference_dir / "stages" / "train.json")["digest"],
               "prompts": file_sha256(task.generic_prompts), "layers": idxs, "n_components": self.n_components,
               "response_tokens": self.response_tokens, "max_length": ctx.cfg.train.max_length}
        pcs = cached(ctx, "caft-pca", key, lambda: self._pca(ctx, idxs))
        out = {}
        for i in idxs:
            order = rank(pcs[i]["scores"], self.n_select)
            mean_sq = pcs[i]["mean_diff"].pow(2).sum().clamp_min(1e-30)
            out[i] = {"components": pcs[i]["components"], "order": order,
                      "captured": pcs[i]["scores"][order].pow(2) / mean_sq}
        return out

    def _pca(self, ctx: RunContext, idxs: list[int]) -> dict[int, dict[str, torch.Tensor]]:
        from grasp_bench.models import load_adapter

        rows = prompt_rows(ctx.cfg.task, "generic_prompts", self.name)
        max_length = ctx.cfg.train.max_length
        finetuned = load_adapter(ctx.load_base(), ctx.reference_adapter)
        generate = [user_turns(r) for r in rows if r["messages"][-1]["role"] != "assistant"]
        replies = iter(greedy_responses(finetuned, ctx.tokenizer, generate, self.response_tokens))
        texts = [r["messages"] if r["messages"][-1]["role"] == "assistant"
                 else user_turns(r) + [{"role": "assistant", "content": next(replies)}] for r in rows]
        acts_ft = response_activations(finetuned, ctx.layers(finetuned), idxs, ctx.tokenizer, texts, max_length)
        del finetuned
        base = ctx.load_base()
        acts_base = response_activations(base, ctx.layers(base), idxs, ctx.tokenizer, texts, max_length)
        out = {}
        for i in idxs:
            diffs = torch.cat([f - b for f, b in zip(acts_ft[i], acts_base[i], strict=True)])
            components, scores = pca_directions(diffs, self.n_components)
            out[i] = {"components": components, "scores": scores, "mean_diff": diffs.mean(0)}
        return out

    def training(self, model, ctx: RunContext):
        return hooks.project_out(ctx.layers(model), self.bases) if self.bases else nullcontext()
