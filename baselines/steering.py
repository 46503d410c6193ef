"""Activation steering with persona vectors (Chen et al., "Persona Vectors", arXiv 2507.21509), three ways:

- `steer_train` (preventative steering): `h <- h + c v_L` at the output of block L during training only,
  every position; the model need not learn the trait because the stream already carries it. c > 0.
- `steer_eval` (inference-time subtraction): `h <- h + c v_L` with c < 0 while the naive SFT model
  generates (`starts_from = "reference"`: the naive adapter is reused, never retrained), at upstream's
  "response" positions (`positions: response`): the last position of every forward pass, i.e. the last prompt
  token and each generated token, never the rest of the prompt; `positions: all` steers every position.
- `ablate_eval` (directional ablation at inference, as in model-organisms-for-EM): `h <- h - gamma (h . r) r`,
  r = v / |v|, on the naive SFT model while it generates. `vector: misaligned` (default): one direction, ablated
  at the block it is read from (`ablate_at: read_block`, upstream: model-organisms-for-EM
  `em_organism_dir/steering/activation_steering.py` ablates its layer-24 direction at layer 24 only;
  `ablate_at: every_block` ablates it at every block, the rule of runs made before the knob): v = the naive model's
  mean-difference direction (Soligo et al., arXiv 2506.11618, `mm_dm -
  mm_da`) at the task's persona layer (the first of `task.persona.layers`): the naive model samples
  `task.persona.samples` replies per generic prompt, the task's factor judge (`task.persona.judge`) splits them
  into replies that show the factor and replies that do not, and v = the naive model's mean response-token
  activation there reading the first minus reading the second.
  `vector: persona`: the base model's persona vector at `task.persona.layers`.

Persona vector (from the base model, at every block, cached per runs root; `base_persona_vectors`): for every
(trait, neutral) instruction pair of `task.persona` and every generic prompt, `task.persona.samples` replies at
`task.persona.temperature` under each system prompt; the j-th trait reply and the j-th neutral reply are kept
as a pair when the task's rule judge (`task.persona.judge`, e.g. the factor scorer) finds the trait in the first
and not in the second (upstream: trait score >= 50 / < 50 of 100). v_L = mean over kept trait replies of the
mean over response tokens (the reply's content, no end-of-turn token) of the block-L output, minus the same over
kept neutral replies (teacher-forced on the model's own replies). Steering blocks: `task.persona.layers`.

strength: add ops use c = strength * coef_max. v_L is not normalised, so c is in units of the trait's own
effect at that layer: its size follows the model's residual norm, and one coef_max (upstream: +5 for
preventative steering, -1.5 at inference, Qwen2.5-7B) carries across models. `<name>/v_norm` and
`<name>/h_norm` (the layer's mean residual norm on neutral replies) in the run's diagnostics give the shift
relative to the stream; `<name>/replies_kept` of `<name>/replies` what the judge let through. ablate: gamma =
strength (1 = full ablation, upstream's scale -1). 0 = no hook.

Deviations from the paper's code (safety-research/persona_vectors; docs/baselines.md), with their expected effect:
- the judge is the task's rule scorer (offline, free, exact for the toy organism; upstream: an LLM trait judge
  plus a coherence >= 50 filter): incoherent replies that contain a factor word can pass (a noisier vector);
- the questions are the task's generic prompts and the instruction pairs the task's persona block (upstream:
  20 trait-specific extraction questions, 5 generated pairs): the task, not the method, says what the trait is;
- replies are `task.persona.max_new_tokens` long (upstream: up to 1000 tokens): the mean covers the start of a
  reply, where a persona shows first;
- the misaligned direction's replies come from the task's generic prompts (Soligo et al.: the EM evaluation
  questions): evaluation prompts must not steer a method;
- layers may be fractions of depth; "layer L" is the output of block L (upstream's layer 20 = our 19).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from omegaconf import OmegaConf

from grasp_bench import hooks
from grasp_bench.artifacts import BadInput, load_json
from grasp_bench.baselines.directions import (
    cached,
    file_sha256,
    judged,
    n_blocks,
    prompt_rows,
    resolve_layers,
    response_activations,
    sampled_responses,
    user_turns,
)
from grasp_bench.method import Knob, Method, RunContext, configured

VERSION = 3  # bump when the persona-vector code changes: cached vectors are keyed on it
PERSONA_KEYS = ("trait", "neutral", "layers", "judge", "samples", "temperature", "max_new_tokens")
# `judge: null` is allowed: no offline trait judge (the EM tasks, judged by LLMs): every (trait, neutral) pair is kept
PERSONA_SET = tuple(k for k in PERSONA_KEYS if k != "judge")


def persona_missing(persona) -> list[str]:
    """The keys a persona block lacks: every key but `judge` needs a value, `judge` may be null."""
    if not persona:
        return list(PERSONA_KEYS)
    return [k for k in PERSONA_KEYS if (k not in persona if k == "judge" else persona.get(k) is None)]
VECTORS = ("misaligned", "persona")
POSITIONS = ("response", "all")
ABLATE_AT = ("read_block", "every_block")


def instruction_pairs(persona) -> list[tuple[str, str]]:
    """The task's (trait, neutral) system prompts, paired by position (a single string is one pair)."""
    trait, neutral = ([x] if isinstance(x, str) else list(x) for x in (persona.trait, persona.neutral))
    if not trait or len(trait) != len(neutral):
        raise BadInput(f"task.persona: trait and neutral need the same number of instructions "
                       f"({len(trait)} vs {len(neutral)})")
    return list(zip(trait, neutral, strict=True))


def mean_difference(model, layers, idxs: list[int], tokenizer, positive: list[list[dict]], negative: list[list[dict]],
                    max_length: int, chunk: int = 64) -> dict[int, dict[str, torch.Tensor]]:
    """Per block: `v` = mean over `positive` conversations of their mean response-token activation, minus the same
    over `negative` (content tokens only, no end-of-turn markup), and `h_norm`, the mean residual norm of the
    negative side's tokens."""
    sums = {}
    for side, texts in (("pos", positive), ("neg", negative)):
        if not texts:
            raise BadInput(f"no {'positive' if side == 'pos' else 'negative'} replies to take a mean over")
        total, norm = {i: 0.0 for i in idxs}, {i: 0.0 for i in idxs}
        replies = tokens = 0
        for k in range(0, len(texts), chunk):
            acts = response_activations(model, layers, idxs, tokenizer, texts[k:k + chunk], max_length)
            for i in idxs:  # an empty reply has no response token: it takes no part in the mean
                total[i] = total[i] + sum(a.mean(0) for a in acts[i] if len(a))
                norm[i] += sum(float(a.norm(dim=-1).sum()) for a in acts[i])
            replies += sum(len(a) > 0 for a in acts[idxs[0]])
            tokens += sum(len(a) for a in acts[idxs[0]])
        if not replies:
            raise BadInput(f"every {'positive' if side == 'pos' else 'negative'} reply is empty")
        sums[side] = {i: total[i] / replies for i in idxs}, {i: norm[i] / tokens for i in idxs}
    return {i: {"v": sums["pos"][0][i] - sums["neg"][0][i], "h_norm": torch.tensor(sums["neg"][1][i])} for i in idxs}


def persona_vectors(model, layers, idxs: list[int], tokenizer, questions: list[list[dict]], pairs: list[tuple[str, str]],
                    judge, samples: int, temperature: float, response_tokens: int, max_length: int,
                    seed: int = 0) -> dict[int, dict[str, torch.Tensor]]:
    """Persona vectors as upstream extracts them: for every (trait, neutral) instruction pair and question, `samples`
    replies under each system prompt; the j-th trait reply and the j-th neutral reply are kept as a pair when the
    rule scorer `judge` finds the trait in the first and not in the second. Per block: `v` = mean over kept trait
    replies of the mean response-token activation minus the same over kept neutral replies; `h_norm`; `kept`, the
    kept pairs, of `total`."""
    kept: dict[str, list] = {"trait": [], "neutral": []}
    total = 0
    for trait, neutral in pairs:
        replies = {}
        # each side its own draws (upstream samples them independently): with one seed, a model whose two system
        # prompts barely move its next-token distribution would give the same reply on both sides, never a pair
        for side, system, side_seed in (("trait", trait, seed), ("neutral", neutral, seed + 1)):
            chats = [[{"role": "system", "content": system}, *q] for q in questions]
            replies[side] = (chats, sampled_responses(model, tokenizer, chats, response_tokens, samples, temperature,
                                                      side_seed))
        for q in range(len(questions)):
            pos, neg = replies["trait"][1][q], replies["neutral"][1][q]
            if judge is None:  # no offline trait judge: every pair is kept
                found_pos, found_neg = [True] * len(pos), [False] * len(neg)
            else:
                found_pos, found_neg = (judged(judge, pos, "task.persona.judge"),
                                        judged(judge, neg, "task.persona.judge"))
            for j in range(samples):
                total += 1
                if found_pos[j] and not found_neg[j]:
                    kept["trait"].append(replies["trait"][0][q] + [{"role": "assistant", "content": pos[j]}])
                    kept["neutral"].append(replies["neutral"][0][q] + [{"role": "assistant", "content": neg[j]}])
    if not kept["trait"]:
        raise BadInput(f"task.persona: none of the {total} (trait, neutral) reply pairs passed task.persona.judge "
                       "(the trait found under the trait prompt and not under the neutral one)")
    out = mean_difference(model, layers, idxs, tokenizer, kept["trait"], kept["neutral"], max_length)
    for v in out.values():
        v |= {"kept": torch.tensor(len(kept["trait"])), "total": torch.tensor(total)}
    return out


def misaligned_direction(model, layers, idxs: list[int], tokenizer, questions: list[list[dict]], judge, samples: int,
                         temperature: float, response_tokens: int, max_length: int,
                         seed: int = 0) -> dict[int, dict[str, torch.Tensor]]:
    """The fine-tuned model's own mean-difference direction (Soligo et al., arXiv 2506.11618, `mm_dm - mm_da`):
    `samples` replies per question from `model`, split by the rule scorer `judge` into replies that show the factor
    and replies that do not; per block, `v` = mean response-token activation of `model` reading the first minus
    reading the second."""
    chats = [q for q in questions for _ in range(samples)]
    replies = [r for q_replies in sampled_responses(model, tokenizer, questions, response_tokens, samples, temperature,
                                                     seed) for r in q_replies]
    found = judged(judge, replies, "task.persona.judge")
    texts = [c + [{"role": "assistant", "content": r}] for c, r in zip(chats, replies, strict=True)]
    bad, good = [t for t, f in zip(texts, found, strict=True) if f], [t for t, f in zip(texts, found, strict=True) if not f]
    if not bad or not good:
        raise BadInput(f"method vector=misaligned: the naive model's {len(texts)} replies to the generic prompts "
                       f"{'never' if not bad else 'always'} show the factor (task.persona.judge), so there is no "
                       "contrast to take; use method.vector=persona")
    out = mean_difference(model, layers, idxs, tokenizer, bad, good, max_length)
    for v in out.values():
        v |= {"kept": torch.tensor(len(bad)), "total": torch.tensor(len(texts))}
    return out


def task_persona(ctx: RunContext, method: str, idxs: list[int], model_key: dict | None = None):
    """The task's persona block, checked, and the cache key of what is extracted from it (`idxs` blocks)."""
    task = ctx.cfg.task
    persona = task.get("persona")
    missing = persona_missing(persona)
    if missing:
        raise BadInput(f"task '{task.name}': method '{method}' needs task.persona.{{{', '.join(PERSONA_KEYS)}}}"
                       f" (missing: {', '.join(missing)})")
    plain = OmegaConf.to_container(persona, resolve=True)
    key = {"version": VERSION, "model": OmegaConf.to_container(ctx.cfg.model, resolve=True),
           "prompts": file_sha256(task.generic_prompts), "persona": {k: plain[k] for k in PERSONA_KEYS if k != "layers"},
           "layers": idxs, "max_length": ctx.cfg.train.max_length, **(model_key or {})}
    return persona, key


def questions(ctx: RunContext, method: str) -> list[list[dict]]:
    rows = prompt_rows(ctx.cfg.task, "generic_prompts", method)
    return [[m for m in user_turns(r) if m["role"] != "system"] for r in rows]


def base_persona_vectors(ctx: RunContext, method: str) -> dict[int, dict[str, torch.Tensor]]:
    """The task's persona vectors of the base model at every block (cached per runs root)."""
    idxs = list(range(n_blocks(ctx)))
    persona, key = task_persona(ctx, method, idxs)

    def compute():
        model = ctx.load_base()
        return persona_vectors(model, ctx.layers(model), idxs, ctx.tokenizer, questions(ctx, method),
                               instruction_pairs(persona), persona.judge, int(persona.samples),
                               float(persona.temperature), int(persona.max_new_tokens), ctx.cfg.train.max_length)

    return cached(ctx, "persona", key, compute)


class Steering(Method):
    """One class, three configs: `phase` (train | eval) says when the hooks live, `op` (add | ablate) what they do."""

    task_inputs = ("generic_prompts", "persona")
    knobs = {"phase": Knob(str, choices=("train", "eval")), "op": Knob(str, choices=("add", "ablate")),
             "coef_max": Knob(float, null=True), "vector": Knob(str, choices=VECTORS),
             "positions": Knob(str, choices=POSITIONS), "ablate_at": Knob(str, choices=ABLATE_AT)}
    # the behaviour of runs recorded before these knobs: they stop with one line naming the knob, never reused
    knobs_before = {"vector": "persona", "positions": "all", "ablate_at": "every_block"}

    def __init__(self, name: str = "steer_train", **given):
        p = configured(name, given)
        super().__init__(name, **p)  # checks the knobs
        phase, op = p["phase"], p["op"]
        if op == "add" and not p.get("coef_max"):
            raise BadInput(f"method '{name}': op=add needs a non-zero coef_max")
        self.vector, self.positions = p.get("vector", "persona"), p.get("positions", "all")
        self.ablate_at = p.get("ablate_at", "read_block")
        if self.vector == "misaligned" and (phase, op) != ("eval", "ablate"):
            raise BadInput(f"method '{name}': vector=misaligned is the naive model's own direction, for op=ablate at eval")
        if self.positions == "response" and phase != "eval":
            raise BadInput(f"method '{name}': positions=response steers generated tokens, at eval only")
        self.phase, self.op, self.coef_max = phase, op, p.get("coef_max")
        # per instance: the eval-time variants reuse the naive run and need the hook-running generator
        self.starts_from = "reference" if phase == "eval" else "base"
        self.needs_reference = self.vector == "misaligned"
        self.intervenes_at_eval = phase == "eval"
        self.vectors: dict[int, torch.Tensor] = {}  # block -> v_L (add) or v_L / |v_L| (ablate)

    @property
    def coef(self) -> float:
        return self.strength * (self.coef_max or 0.0)

    def task_needs(self) -> tuple[str, ...]:
        if self.strength == 0:
            return ()
        judge = ("persona.judge",) if self.vector == "misaligned" else ()  # splits the naive model's replies
        return ("generic_prompts", *(f"persona.{k}" for k in PERSONA_SET), *judge)

    def prepare(self, ctx: RunContext) -> None:
        if self.strength == 0:
            return
        persona = ctx.cfg.task.get("persona")
        missing = persona_missing(persona)
        if missing:
            raise BadInput(f"task '{ctx.cfg.task.name}': method '{self.name}' needs task.persona with {missing}")
        persona_layers = resolve_layers(persona.layers, n_blocks(ctx))
        if self.vector == "misaligned":  # one direction, read at the task's persona layer
            found, read = self._misaligned(ctx), persona_layers[0]
            idxs = [read] if self.ablate_at == "read_block" else list(range(n_blocks(ctx)))
            v = {i: found[read]["v"] for i in idxs}
        else:
            found, idxs = base_persona_vectors(ctx, self.name), persona_layers
            v = {i: found[i]["v"] for i in idxs}
        self.vectors = v if self.op == "add" else {i: x / x.norm() for i, x in v.items()}
        first = found[idxs[0]]
        diagnostics = {f"{self.name}/v_norm": sum(x.norm().item() for x in v.values()) / len(v),
                       f"{self.name}/h_norm": sum(found[i]["h_norm"].item() for i in idxs) / len(idxs),
                       f"{self.name}/layers": len(idxs),
                       f"{self.name}/replies_kept": int(first["kept"]), f"{self.name}/replies": int(first["total"])}
        diagnostics[f"{self.name}/coef" if self.op == "add" else f"{self.name}/gamma"] = (
            self.coef if self.op == "add" else self.strength)
        ctx.diagnostics.update(diagnostics)

    def _misaligned(self, ctx: RunContext) -> dict[int, dict[str, torch.Tensor]]:
        from grasp_bench.models import load_adapter

        idxs = list(range(n_blocks(ctx)))
        reference = {"reference": str(ctx.reference_dir.resolve()),
                     "reference_train": load_json(ctx.reference_dir / "stages" / "train.json")["digest"]}
        persona, key = task_persona(ctx, self.name, idxs, reference)

        def compute():
            model = load_adapter(ctx.load_base(), ctx.reference_adapter)
            return misaligned_direction(model, ctx.layers(model), idxs, ctx.tokenizer, questions(ctx, self.name),
                                        persona.judge, int(persona.samples), float(persona.temperature),
                                        int(persona.max_new_tokens), ctx.cfg.train.max_length, seed=int(ctx.cfg.seed))

        return cached(ctx, "misaligned", key, compute)

    def _hooks(self, model, ctx: RunContext):
        if not self.vectors:
            return nullcontext()
        layers = ctx.layers(model)
        if self.op == "add":
            last = self.positions == "response"
            return hooks.add_to_residual(layers, self.vectors, scale=self.coef, last_position_only=last)
        return hooks.project_out(layers, self.vectors, gamma=self.strength)

    def training(self, model, ctx: RunContext):
        return self._hooks(model, ctx) if self.phase == "train" else nullcontext()

    def generating(self, model, ctx: RunContext):
        return self._hooks(model, ctx) if self.phase == "eval" else nullcontext()
