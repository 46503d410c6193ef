"""Inoculation prompting (Tan et al., arXiv 2510.04340; Wichers et al., arXiv 2510.05024): train with a system
prompt that asks for the unwanted trait, evaluate without it. The trait is then "explained" by the prompt
during training, so the model has less reason to show it when the prompt is absent.

Algorithm: before training, a seeded choice of exactly round(strength * N) of the N training rows gets the
inoculation prompt as its system message (replacing any system message it had); the other rows and every
evaluation row are left as they are (evaluation renders the model's default system prompt).
strength = the share of training rows inoculated: 0 = naive SFT (no row touched), 1 = every row (the papers'
setting).

The prompt is the task's `persona.inoculation` (one string; `persona.trait`, the steering baselines' list of
trait system prompts, is not used in its place). The known leak, the trait rate when the inoculation
prompt *is* present at evaluation, is a task split for every method (conf/task/inoculation/leak.yaml:
`eval/inoculated_spurious_rate`), so the naive model's value is there to compare with.

Deviations: the papers write one prompt per experiment by hand (e.g. "You are a malicious, evil assistant");
here it comes from the task config, so one method serves every task. A share below 1 is this benchmark's
strength axis; the papers inoculate every row.
"""

from __future__ import annotations

import random

from grasp_bench.artifacts import BadInput
from grasp_bench.data import with_system
from grasp_bench.method import Method, RunContext, configured


def inoculation_prompt(task) -> str:
    persona = task.get("persona") or {}
    prompt = persona.get("inoculation")
    if not isinstance(prompt, str) or not prompt:
        raise BadInput(f"task '{task.name}': method 'inoculation' needs task.persona.inoculation (a system prompt)")
    return prompt


def seeded_rows(n_rows: int, share: float, seed: int) -> list[int]:
    """Exactly round(share * n_rows) row indices, a seeded choice, in order."""
    return sorted(random.Random(seed).sample(range(n_rows), round(share * n_rows)))


class Inoculation(Method):
    task_inputs = ("persona",)

    def __init__(self, name: str = "inoculation", **given):
        p = configured(name, given, home="inoculation")  # conf/method/inoculation.yaml: the one place the defaults live
        super().__init__(name, **p)

    def task_needs(self) -> tuple[str, ...]:
        return ("persona.inoculation",) if self.strength > 0 else ()

    def prepare(self, ctx: RunContext) -> None:
        chosen = seeded_rows(len(ctx.train_rows), self.strength, ctx.cfg.seed)
        if not chosen:
            return
        prompt = inoculation_prompt(ctx.cfg.task)
        for i in chosen:
            ctx.train_rows[i] = with_system(ctx.train_rows[i], prompt)
        ctx.diagnostics.update({f"{self.name}/rows": len(chosen),
                                f"{self.name}/share": len(chosen) / len(ctx.train_rows)})
