"""Weight restoration (LLMAlignment: Yang, Tao, Chen, Xu, "Alleviating the Fear of Losing Alignment in LLM
Fine-tuning", IEEE S&P 2025, arXiv 2504.09757), as a post-hoc edit of the naive SFT model.

Algorithm (`starts_from = "reference"`: the naive adapter is reused, never retrained):
1. Merge the naive LoRA into the base weights: W = W_ft. Work in float32.
2. Direction d = mean over factor-eliciting prompts (`task.factor_prompts`, never evaluation prompts) of
   the BASE model's last-prompt-token state at the output of block `layer` (chat template with the
   generation prompt, no reply): how the base model represents those requests before answering.
3. A restoration step: loss L = -cos(mean over a batch of h_W(x)[last], d), gradients summed over the
   batches; among the weights of blocks <= `layer` (norms and embeddings excluded) where (W - W_base) has the
   gradient's sign (resetting them lowers L to first order), restore the top k by |grad| to their base values,
   k = ceil(rate x the number of parameters of ALL decoder blocks) (upstream's `get_total_param`: every
   parameter under the decoder layers, norms and blocks past `layer` included).
4. Upstream's schedule: `warmup` steps, then the task metric = exp(-mean token NLL) of the model on the final
   assistant turns of the last `task_rows` training rows (geometric-mean token probability, in (0, 1]). If it
   fell more than `metric_drop` (relative, 5%) below W_ft's, restart from W_ft and run all `steps` in rollback
   mode; else go on to `steps` without. Rollback mode, after every restoration step: among the weights that step
   restored, the eligible ones are those where (W - W_ft) has the sign of the gradient of
   L_task = -cos(mean h_W(task prompts)[last], d_task) (d_task = W_ft's state on the same task prompts); the top
   `rollback_rate` (20%) of the eligible by |grad L_task| go back to W_ft.
`post_train` returns the merged, restored model; the pipeline saves full weights and generation loads them.

strength: rate = strength * rate_max (rate_max = 0.002 per step, upstream's `recovery_rate`; 20 steps, 5 of
warm-up), so strength 1 is the paper's setting and restores at most 20 x 0.2% = 4% of all decoder-block
parameters. strength 0 restores nothing and returns the naive adapter unmerged, so the saved model is the
naive one exactly.

Deviations from the paper's code (kangyangWHU/LLMAlignment@478a8ae; docs/baselines.md), with their expected effect:
- the task metric is exp(-NLL) on the last training rows (upstream: the task's own evaluator on held-out data):
  no evaluator inside a method, and evaluation rows must not steer one. Their loss also covers the factor's
  tokens (the toy task's insults), so the check is conservative about removing the factor (rollback mode more
  often: less restored);
- gradients are zeroed every step (upstream accumulates them across the steps of the warm-up and of a run
  without rollback, zeroing only in rollback mode), so each step ranks weights by the current model's gradient,
  not by stale ones of weights already reset (a little less concentrated on the first step's weights);
- exact top-k (upstream: a threshold, which ties can overshoot);
- no checkpoint walk: the model after the last step is the result (upstream saves every 5 steps and reports the
  last checkpoint before its evaluator's task metric fails, which needs the evaluation in the loop): our result
  can be one that upstream would have stepped back from (more restored, more task cost);
- `layer` is the block whose output is read (upstream's `layer_end` = our layer + 1), and may be a
  fraction of depth (upstream: about 2/3), so one config serves every model size.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from grasp_bench.artifacts import BadInput, write_jsonl
from grasp_bench.baselines.directions import last_token_states, prompt_rows, resolve_layers, user_turns
from grasp_bench.data import chat_batches, label_positions
from grasp_bench.method import Knob, Method, RunContext, configured


class Restore(Method):
    starts_from = "reference"
    task_inputs = ("factor_prompts",)
    knobs = {"rate_max": Knob(float, low=0, low_open=True), "steps": Knob(int, low=1), "warmup": Knob(int, low=0),
             "layer": Knob(float), "rollback_rate": Knob(float, low=0, high=1), "metric_drop": Knob(float, low=0),
             "task_rows": Knob(int, low=1), "batch_size": Knob(int, low=1)}
    knobs_before = {"warmup": "check after every step"}  # the rollback rule of runs recorded before the knob

    def __init__(self, name: str = "restore", **given):
        p = configured(name, given, home="restore")
        super().__init__(name, **p)  # checks each knob; the rule between two of them is checked here
        rate_max, steps, warmup, rollback_rate = p["rate_max"], p["steps"], p["warmup"], p["rollback_rate"]
        if warmup > steps:
            raise BadInput(f"method.warmup={warmup}: expected at most method.steps={steps}")
        self.rate = self.strength * rate_max
        self.steps, self.warmup, self.layer_spec, self.rollback_rate = steps, warmup, p["layer"], rollback_rate
        self.metric_drop, self.task_rows, self.batch_size = p["metric_drop"], p["task_rows"], p["batch_size"]

    def post_train(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        if self.rate == 0:
            return model
        merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
        merged = merged.float()
        merged.eval()  # no dropout: gradients and metrics are deterministic
        base = ctx.load_base().float().eval()
        layers = ctx.layers(merged)
        block = resolve_layers(self.layer_spec, len(layers))[0]
        rows = ctx.train_rows[-self.task_rows:]
        factor = [user_turns(r) for r in prompt_rows(ctx.cfg.task, "factor_prompts", self.name)]
        edit = Restoration(merged, layers, ctx.layers(base), block, ctx.tokenizer, ctx.cfg.train.max_length,
                           self.batch_size)
        d = edit.direction(base, ctx.layers(base), factor)  # the base model's state on factor prompts
        del base
        log = edit.run(d, factor, rows, self.rate, self.steps, self.warmup, self.rollback_rate, self.metric_drop)
        write_jsonl(ctx.run_dir / "restore_log.jsonl", log)
        ctx.diagnostics.update({
            f"{self.name}/rate": self.rate, f"{self.name}/steps": self.steps,
            f"{self.name}/restored_frac": log[-1]["restored_frac"],
            f"{self.name}/rollback_mode": any(r["phase"] == "rollback" for r in log),
            f"{self.name}/rolled_back": sum(r["rollback"] for r in log),
            f"{self.name}/cos_before": log[0]["cos_before"], f"{self.name}/cos_after": log[-1]["cos_after"],
            f"{self.name}/task_score_ratio": log[-1]["task_score"] / log[-1]["task_score_ft"],
        })
        for p in merged.parameters():
            p.grad = None
        return merged


class Restoration:
    """The restore-and-rollback loop on a merged model (edited in place), given the base model's weights."""

    def __init__(self, model: nn.Module, layers: nn.ModuleList, base_layers: nn.ModuleList, block: int, tokenizer,
                 max_length: int, batch_size: int = 8):
        self.model, self.layers, self.block, self.tok = model, layers, block, tokenizer
        self.max_length, self.batch_size = max_length, batch_size
        self.candidates = candidate_weights(layers, block)
        base = candidate_weights(base_layers, block)
        self.base = {n: base[n].detach().clone() for n in self.candidates}
        self.ft = {n: p.detach().clone() for n, p in self.candidates.items()}  # W_ft, for rollbacks
        # upstream's denominator: every parameter of every decoder block (norms and blocks past `block` included)
        self.n_params = sum(p.numel() for p in layers.parameters())

    def direction(self, model: nn.Module, layers: nn.ModuleList, prompts: list[list[dict]]) -> torch.Tensor:
        """Mean last-prompt-token state of `model` at the output of block `self.block`."""
        with torch.no_grad():
            states = last_token_states(model, layers[self.block], self.tok, prompts, self.max_length, self.batch_size)
            return torch.cat(list(states)).mean(0)

    def grad(self, prompts: list[list[dict]], d: torch.Tensor) -> float:
        """Zero the gradients, then accumulate those of -cos(mean batch state, d) over batches; returns the mean cos."""
        self.model.zero_grad(set_to_none=True)
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in self.candidates.values():
            p.requires_grad_(True)
        cosines = []
        for states in last_token_states(self.model, self.layers[self.block], self.tok, prompts, self.max_length,
                                        self.batch_size):
            cos = torch.nn.functional.cosine_similarity(states.mean(0), d, dim=0)
            (-cos).backward()
            cosines.append(cos.item())
        return sum(cosines) / len(cosines)

    @torch.no_grad()
    def task_score(self, rows: list[dict]) -> float:
        """exp(-mean NLL) over the final assistant turns of `rows`."""
        total, count = 0.0, 0
        device = next(self.model.parameters()).device
        head = self.model.get_output_embeddings()
        for batch in chat_batches(self.tok, [r["messages"] for r in rows], self.max_length, self.batch_size, device):
            hidden = self.model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
            scored = label_positions(batch["labels"])  # the logits of scored positions only: the vocabulary is most of the cost
            logits = head(hidden[:, :-1][scored]).float()
            total += torch.nn.functional.cross_entropy(logits, batch["labels"][:, 1:][scored], reduction="sum").item()
            count += int(scored.sum())
        return math.exp(-total / max(count, 1))

    def _top(self, scores: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        """Boolean masks of the k largest positive scores over all candidates (exact top-k)."""
        names = list(scores)
        flat = torch.cat([scores[n].flatten() for n in names])
        k = min(k, int((flat > 0).sum()))
        chosen = torch.zeros_like(flat, dtype=torch.bool)
        if k > 0:
            chosen[torch.topk(flat, k).indices] = True
        masks, start = {}, 0
        for n in names:
            size = scores[n].numel()
            masks[n] = chosen[start:start + size].view_as(scores[n])
            start += size
        return masks

    @torch.no_grad()
    def restore_step(self, rate: float) -> dict[str, torch.Tensor]:
        """Reset to the base the top k = ceil(rate x all decoder-block parameters) candidates by |grad| among those
        whose reset lowers the loss to first order (sign rule)."""
        scores = {}
        for n, p in self.candidates.items():
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            same_sign = (p - self.base[n]) * g > 0
            scores[n] = torch.where(same_sign, g.abs(), torch.zeros_like(g))
        masks = self._top(scores, math.ceil(rate * self.n_params))
        for n, p in self.candidates.items():
            p[masks[n]] = self.base[n][masks[n]]
        return masks

    @torch.no_grad()
    def rollback(self, restored: dict[str, torch.Tensor], fraction: float) -> int:
        """Among `restored`, the eligible ones: those whose (W - W_ft) has the gradient's sign (setting them back
        lowers the task loss to first order); set back to W_ft the top `fraction` of the eligible by |grad|. The
        gradients must be those of the task loss."""
        scores, n_eligible = {}, 0
        for n, p in self.candidates.items():
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            eligible = restored[n] & ((p - self.ft[n]) * g > 0)
            n_eligible += int(eligible.sum())
            scores[n] = torch.where(eligible, g.abs(), torch.zeros_like(g))
        masks = self._top(scores, math.ceil(fraction * n_eligible))
        for n, p in self.candidates.items():
            p[masks[n]] = self.ft[n][masks[n]]
        return sum(int(m.sum()) for m in masks.values())

    def restored_fraction(self) -> float:
        """The share of all decoder-block parameters that now hold their base value but did not in W_ft."""
        with torch.no_grad():
            same = sum(int(((p == self.base[n]) & (self.ft[n] != self.base[n])).sum())
                       for n, p in self.candidates.items())
        return same / self.n_params

    @torch.no_grad()
    def reset(self) -> None:
        """Back to W_ft."""
        for n, p in self.candidates.items():
            p.copy_(self.ft[n])

    def _step(self, step: int, phase: str, d: torch.Tensor, factor_prompts, task_prompts, d_task, rate: float,
              rollback_rate: float) -> dict:
        cos_before = self.grad(factor_prompts, d)
        restored = self.restore_step(rate)
        rolled_back = 0
        if phase == "rollback":
            self.grad(task_prompts, d_task)
            rolled_back = self.rollback(restored, rollback_rate)
        cos_after = torch.nn.functional.cosine_similarity(
            self.direction(self.model, self.layers, factor_prompts), d, dim=0).item()
        return {"step": step + 1, "phase": phase, "cos_before": cos_before, "cos_after": cos_after,
                "restored": sum(int(m.sum()) for m in restored.values()), "rollback": rolled_back,
                "restored_frac": self.restored_fraction()}

    def run(self, d: torch.Tensor, factor_prompts: list[list[dict]], task_rows: list[dict], rate: float, steps: int,
            warmup: int, rollback_rate: float, metric_drop: float) -> list[dict]:
        """Upstream's schedule: `warmup` restoration steps towards `d`, then the task metric is checked; if it fell
        more than `metric_drop` below W_ft's, restart from W_ft and run all `steps` with a rollback after every one,
        else go on to `steps` without. One log row per step; the check and the last row carry the task metric."""
        task_prompts = [user_turns(r) for r in task_rows]
        d_task = self.direction(self.model, self.layers, task_prompts)  # W_ft's own state on task prompts
        score_ft = self.task_score(task_rows)
        args = (d, factor_prompts, task_prompts, d_task, rate, rollback_rate)
        log = [self._step(i, "warmup", *args) for i in tqdm(range(warmup), desc="restore: warm-up", unit="step")]
        score = self.task_score(task_rows)
        if log:
            log[-1] |= {"task_score": score, "task_score_ft": score_ft}
        if score < (1 - metric_drop) * score_ft:
            self.reset()
            todo, phase = range(steps), "rollback"
        else:
            todo, phase = range(warmup, steps), "restore"
        log += [self._step(i, phase, *args) for i in tqdm(todo, desc=f"restore: {phase}", unit="step")]
        if todo:
            log[-1] |= {"task_score": self.task_score(task_rows), "task_score_ft": score_ft}
        self.model.zero_grad(set_to_none=True)
        return log


def candidate_weights(layers: nn.ModuleList, last_block: int) -> dict[str, nn.Parameter]:
    """The weights restoration may reset: those of blocks 0..last_block except norms ("<block>.<name>")."""
    return {f"{i}.{n}": p for i in range(last_block + 1) for n, p in layers[i].named_parameters() if "norm" not in n}
