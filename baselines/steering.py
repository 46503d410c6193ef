"""Activation steering with persona vectors (Chen et al., "Persona Vectors", arXiv 2507.21509), three ways:

- `steer_train` (preventative steering): `h <- h + c v_L` at the output of block L during training only,
  every position; the model need not learn the trait because the stream already carries it. c > 0.
- `steer_eval` (inference-time subtraction): `h <- h + c v_L` with c < 0 while the naive SFT model
  generates (`starts_from = "reference"`: the naive adapter is reused, never retrained).
- `ablate_eval` (directional ablation at inference, as in model-organisms-for-EM's projection hook):
  `h <- h - gamma (h . v) v` with v = v_L / |v_L|, on the naive SFT model while it generates.

Persona vector (computed once from the base model and cached per runs root): for each generic prompt
(`task.generic_prompts`) the base model answers greedily twice, under the task's trait system prompt and
under its neutral one (`task.persona.trait` / `task.persona.neutral`); v_L = mean over prompts of the
mean over response tokens of the block-L output under the trait prompt, minus the same under the neutral
prompt (teacher-forced on the model's own replies). Blocks: `task.persona.layers`.

strength: add ops use c = strength * coef_max. v_L is not normalised, so c is in units of the trait's own
effect at that layer: its size follows the model's residual norm, and one coef_max (upstream: +5 for
preventative steering, -1.5 at inference, Qwen2.5-7B) carries across models. `<name>/v_norm` and
`<name>/h_norm` (the layer's mean residual norm on neutral replies) in the run's diagnostics give the shift
relative to the stream. ablate: gamma = strength (1 = full ablation, upstream's scale -1). 0 = no hook.

Deviations from the paper's code (safety-research/persona_vectors):
- no judge filtering of the contrastive replies (upstream keeps pairs with trait score >= 50 / < 50):
  judges belong to evaluation, and a method's set-up must run offline and cost nothing per run;
- one greedy reply per prompt and side (upstream: 10 samples at temperature 1), on the task's generic
  prompts with one trait/neutral pair (upstream: 5 instruction pairs, 20 questions per trait): the vector
  is deterministic, and the task, not the method, says what the trait is;
- inference steering acts on every position of every forward pass (upstream's default "response"
  positions steer only the last prompt token and the generated ones), as model-organisms-for-EM's hook
  does: one operator (grasp_bench.hooks) for training and inference;
- layers may be fractions of depth; "layer L" is the output of block L (upstream's layer 20 = our 19).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from omegaconf import OmegaConf

from grasp_bench import hooks
from grasp_bench.artifacts import BadInput, int_at_least
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

VERSION = 1  # bump when the persona-vector code changes: cached vectors are keyed on it
PERSONA_KEYS = ("trait", "neutral", "layers")


def persona_vectors(model, layers, idxs: list[int], tokenizer, prompts: list[list[dict]], trait: str, neutral: str,
                    response_tokens: int, max_length: int) -> dict[int, dict[str, torch.Tensor]]:
    """Per block: `v` = mean response-token activation under `trait` minus under `neutral`, and `h_norm`, the
    mean residual norm of the neutral replies' tokens."""
    means, norms = {}, {}
    for side, system in (("trait", trait), ("neutral", neutral)):
        chats = [[{"role": "system", "content": system}, *p] for p in prompts]
        replies = greedy_responses(model, tokenizer, chats, response_tokens)
        texts = [c + [{"role": "assistant", "content": r}] for c, r in zip(chats, replies, strict=True)]
        acts = response_activations(model, layers, idxs, tokenizer, texts, max_length)
        means[side] = {i: torch.stack([a.mean(0) for a in acts[i] if len(a)]).mean(0) for i in idxs}
        norms[side] = {i: torch.cat(acts[i]).norm(dim=-1).mean() for i in idxs}
    return {i: {"v": means["trait"][i] - means["neutral"][i], "h_norm": norms["neutral"][i]} for i in idxs}


class Steering(Method):
    """One class, three configs: `phase` (train | eval) says when the hooks live, `op` (add | ablate) what they do."""

    task_inputs = ("generic_prompts", "persona")

    def __init__(self, name: str = "steer_train", strength: float = 1.0, grid: list[float] | None = None,
                 phase: str = "train", op: str = "add", coef_max: float | None = 5.0, response_tokens: int = 64):
        super().__init__(name, strength, grid)
        if phase not in ("train", "eval") or op not in ("add", "ablate"):
            raise BadInput(f"method '{name}': phase must be train|eval and op add|ablate; got {phase}, {op}")
        if op == "add" and not coef_max:
            raise BadInput(f"method '{name}': op=add needs a non-zero coef_max")
        int_at_least("method.response_tokens", response_tokens, 1)
        self.phase, self.op, self.coef_max, self.response_tokens = phase, op, coef_max, response_tokens
        # per instance: the eval-time variants reuse the naive run and need the hook-running generator
        self.starts_from = "reference" if phase == "eval" else "base"
        self.intervenes_at_eval = phase == "eval"
        self.vectors: dict[int, torch.Tensor] = {}  # block -> v_L (add) or v_L / |v_L| (ablate)

    @property
    def coef(self) -> float:
        return self.strength * (self.coef_max or 0.0)

    def prepare(self, ctx: RunContext) -> None:
        if self.strength == 0:
            return
        task = ctx.cfg.task
        persona = task.get("persona")
        missing = [k for k in PERSONA_KEYS if not persona or persona.get(k) is None]
        if missing:
            raise BadInput(f"task '{task.name}': method '{self.name}' needs task.persona.{{{', '.join(PERSONA_KEYS)}}}"
                           f" (missing: {', '.join(missing)})")
        idxs = resolve_layers(persona.layers, n_blocks(ctx))
        key = {"version": VERSION, "model": OmegaConf.to_container(ctx.cfg.model, resolve=True),
               "prompts": file_sha256(task.generic_prompts),
               "trait": persona.trait, "neutral": persona.neutral, "layers": idxs,
               "response_tokens": self.response_tokens, "max_length": ctx.cfg.train.max_length}

        def compute():
            model = ctx.load_base()
            rows = prompt_rows(task, "generic_prompts", self.name)
            prompts = [[m for m in user_turns(r) if m["role"] != "system"] for r in rows]
            return persona_vectors(model, ctx.layers(model), idxs, ctx.tokenizer, prompts, persona.trait,
                                   persona.neutral, self.response_tokens, ctx.cfg.train.max_length)

        found = cached(ctx, "persona", key, compute)
        v = {i: found[i]["v"] for i in idxs}
        self.vectors = v if self.op == "add" else {i: x / x.norm() for i, x in v.items()}
        diagnostics = {f"{self.name}/v_norm": sum(x.norm().item() for x in v.values()) / len(v),
                       f"{self.name}/h_norm": sum(found[i]["h_norm"].item() for i in idxs) / len(idxs)}
        diagnostics[f"{self.name}/coef" if self.op == "add" else f"{self.name}/gamma"] = (
            self.coef if self.op == "add" else self.strength)
        ctx.diagnostics.update(diagnostics)

    def _hooks(self, model, ctx: RunContext):
        if not self.vectors:
            return nullcontext()
        layers = ctx.layers(model)
        if self.op == "add":
            return hooks.add_to_residual(layers, self.vectors, scale=self.coef)
        return hooks.project_out(layers, self.vectors, gamma=self.strength)

    def training(self, model, ctx: RunContext):
        return self._hooks(model, ctx) if self.phase == "train" else nullcontext()

    def generating(self, model, ctx: RunContext):
        return self._hooks(model, ctx) if self.phase == "eval" else nullcontext()
