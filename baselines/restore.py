"""Weight restoration (LLMAlignment: Yang, Tao, Chen, Xu, "Alleviating the Fear of Losing Alignment in LLM
Fine-tuning", IEEE S&P 2025, arXiv 2504.09757), as a post-hoc edit of the naive SFT model.

Algorithm (`starts_from = "reference"`: the naive adapter is reused, never retrained):
1. Merge the naive LoRA into the base weights: W = W_ft. Work in float32.
2. Direction d = mean over factor-eliciting prompts (`task.factor_prompts`, never evaluation prompts) of
   the BASE model's last-prompt-token state at the output of block `layer` (chat template with the
   generation prompt, no reply): how the base model represents those requests before answering.
3. Each of `steps` steps: loss L = -cos(mean over a batch of h_W(x)[last], d), gradients summed over the
   batches; among the weights of blocks <= `layer` (norms and embeddings excluded) where (W - W_base)
   has the gradient's sign (resetting them lowers L to first order), restore the top `rate` fraction
   (of all candidate weights) by |grad| to their base values.
4. Task metric = exp(-mean token NLL) of the model on the final assistant turns of the last `task_rows`
   training rows (geometric-mean token probability, in (0, 1]). When it falls more than `metric_drop`
   (relative, 5%) below W_ft's, roll back that step: among the weights it restored, those where
   (W - W_ft) has the sign of the gradient of L_task = -cos(mean h_W(task prompts)[last], d_task)
   (d_task = W_ft's state on the same task prompts), the top `rollback_rate` (20%) of the step's
   restorations by |grad L_task| go back to W_ft.
`post_train` returns the merged, restored model; the pipeline saves full weights and generation loads them.

strength: rate = strength * rate_max (rate_max = 0.002 per step, upstream's `recovery_rate`), so strength 1
is the paper's setting and restores at most 20 x 0.2% = 4% of the candidate weights. strength 0 restores
nothing and returns the naive adapter unmerged, so the saved model is the naive one exactly.

Deviations from the paper's code (kangyangWHU/LLMAlignment@478a8ae):
- the rollback check runs after every step, against the task metric above (upstream: a 5-step warm-up,
  then a restart from W_ft with rollback on every step, judged by the task's own evaluator): one pass,
  and no evaluator inside a method. The rows it uses were trained on, because evaluation rows must not
  steer a method; their loss also covers the factor's tokens (the toy task's insults), so this metric
  is conservative about removing the factor;
- gradients are zeroed every step (upstream accumulates them across steps, zeroing only on rollback), so
  each step ranks weights by the current model's gradient, not by stale ones of weights already reset;
- k = rate x (number of candidate weights), not of all weights, so strength does not depend on the size
  of the embeddings; exact top-k (upstream: a threshold, which ties can overshoot);
- no checkpoint walk: the model after the last step is the result (upstream picks the last saved step
  before the task metric fails, which needs the evaluation in the loop);
- `conf/method/restore.yaml` runs 10 steps at rate_max 0.004 instead of 20 at 0.002: the same largest
  restored share (4%) in half the CPU time (each step costs two to four passes over the merged model on CPU);
  `method.steps=20 method.rate_max=0.002` is upstream's schedule;
- `layer` is the block whose output is read (upstream's `layer_end` = our layer + 1), and may be a
  fraction of depth (upstream: about 2/3), so one config serves every model size.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from grasp_bench.artifacts import BadInput, int_at_least, write_jsonl
from grasp_bench.baselines.directions import last_token_states, prompt_rows, resolve_layers, user_turns
from grasp_bench.data import chat_batches
from grasp_bench.method import Method, RunContext


class Restore(Method):
    starts_from = "reference"
    task_inputs = ("factor_prompts",)

    def __init__(self, name: str = "restore", strength: float = 1.0, grid: list[float] | None = None,
                 rate_max: float = 0.002, steps: int = 20, layer: float | int = 0.67, rollback_rate: float = 0.2,
                 metric_drop: float = 0.05, task_rows: int = 32, batch_size: int = 8):
        super().__init__(name, strength, grid)
        for knob, value in (("steps", steps), ("task_rows", task_rows), ("batch_size", batch_size)):
            int_at_least(f"method.{knob}", value, 1)
        if rate_max <= 0 or not 0 <= rollback_rate <= 1 or metric_drop < 0:
            raise BadInput(f"method '{name}': need rate_max > 0, rollback_rate in [0, 1], metric_drop >= 0")
        self.rate = strength * rate_max
        self.steps, self.layer_spec, self.rollback_rate = steps, layer, rollback_rate
        self.metric_drop, self.task_rows, self.batch_size = metric_drop, task_rows, batch_size

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
        log = edit.run(d, factor, rows, self.rate, self.steps, self.rollback_rate, self.metric_drop)
        write_jsonl(ctx.run_dir / "restore_log.jsonl", log)
        ctx.diagnostics.update({
            f"{self.name}/rate": self.rate, f"{self.name}/steps": self.steps,
            f"{self.name}/restored_frac": log[-1]["restored_frac"],
            f"{self.name}/rollbacks": sum(r["rollback"] > 0 for r in log),
            f"{self.name}/cos_before": log[0]["cos_before"], f"{self.name}/cos_after": log[-1]["cos_after"],
            f"{self.name}/task_score_ratio": log[-1]["task_score"] / log[0]["task_score_ft"],
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
        self.n_candidates = sum(p.numel() for p in self.candidates.values())

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
            targets = batch["labels"][:, 1:]
            scored = targets != -100  # the logits of scored positions only: the vocabulary is most of the cost
            logits = head(hidden[:, :-1][scored]).float()
            total += torch.nn.functional.cross_entropy(logits, targets[scored], reduction="sum").item()
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
        """Reset the top `rate` fraction of candidates whose reset lowers the loss (sign rule) to the base."""
        scores = {}
        for n, p in self.candidates.items():
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            same_sign = (p - self.base[n]) * g > 0
            scores[n] = torch.where(same_sign, g.abs(), torch.zeros_like(g))
        masks = self._top(scores, math.ceil(rate * self.n_candidates))
        for n, p in self.candidates.items():
            p[masks[n]] = self.base[n][masks[n]]
        return masks

    @torch.no_grad()
    def rollback(self, restored: dict[str, torch.Tensor], fraction: float) -> int:
        """Among `restored`, set back to W_ft the top `fraction` of them (by |grad|) whose (W - W_ft) has the
        gradient's sign; the gradients must be those of the task loss."""
        n_restored = sum(int(m.sum()) for m in restored.values())
        scores = {}
        for n, p in self.candidates.items():
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            eligible = restored[n] & ((p - self.ft[n]) * g > 0)
            scores[n] = torch.where(eligible, g.abs(), torch.zeros_like(g))
        masks = self._top(scores, math.ceil(fraction * n_restored))
        for n, p in self.candidates.items():
            p[masks[n]] = self.ft[n][masks[n]]
        return sum(int(m.sum()) for m in masks.values())

    def restored_fraction(self) -> float:
        with torch.no_grad():
            same = sum(int(((p == self.base[n]) & (self.ft[n] != self.base[n])).sum())
                       for n, p in self.candidates.items())
        return same / self.n_candidates

    def run(self, d: torch.Tensor, factor_prompts: list[list[dict]], task_rows: list[dict], rate: float, steps: int,
            rollback_rate: float, metric_drop: float) -> list[dict]:
        """`steps` restoration steps towards `d`; returns one log row per step."""
        task_prompts = [user_turns(r) for r in task_rows]
        d_task = self.direction(self.model, self.layers, task_prompts)  # W_ft's own state on task prompts
        score_ft = self.task_score(task_rows)
        log = []
        for step in tqdm(range(steps), desc="restore", unit="step"):
            cos_before = self.grad(factor_prompts, d)
            restored = self.restore_step(rate)
            score = score_restored = self.task_score(task_rows)
            rolled_back = 0
            if score < (1 - metric_drop) * score_ft:
                self.grad(task_prompts, d_task)
                rolled_back = self.rollback(restored, rollback_rate)
                score = self.task_score(task_rows)
            cos_after = torch.nn.functional.cosine_similarity(
                self.direction(self.model, self.layers, factor_prompts), d, dim=0).item()
            log.append({"step": step + 1, "cos_before": cos_before, "cos_after": cos_after,
                        "restored": sum(int(m.sum()) for m in restored.values()), "rollback": rolled_back,
                        "task_score_restored": score_restored, "task_score": score, "task_score_ft": score_ft,
                        "restored_frac": self.restored_fraction()})
        self.model.zero_grad(set_to_none=True)
        return log


def candidate_weights(layers: nn.ModuleList, last_block: int) -> dict[str, nn.Parameter]:
    """The weights restoration may reset: those of blocks 0..last_block except norms ("<block>.<name>")."""
    return {f"{i}.{n}": p for i in range(last_block + 1) for n, p in layers[i].named_parameters() if "norm" not in n}
