"""Data mixing: a share of the training rows replaced by aligned generic chat, the base model's own greedy
replies to the task's generic prompts (the simplest "keep doing what you did" regulariser; cf. the aligned
proxy data of the selective-generalisation benchmark, arianaazarbal/selective-generalization).

Algorithm: before training, a seeded choice of exactly round(strength * max_share * N) of the N training rows
is replaced, in order, by the generic chats (cycled when more rows are replaced than there are prompts). The
number of rows, and so the number of optimizer steps and the schedule, is unchanged. The replies are generated
once per (model, prompt file, length) and cached in `<paths.runs>/.derived/` (`directions.base_replies`).
strength 0 = naive SFT; 1 = `max_share` of the rows replaced (default 0.5: at a share of 1 nothing of the task
would be left to learn).
"""

from __future__ import annotations

from grasp_bench.baselines.directions import base_replies
from grasp_bench.baselines.inoculation import seeded_rows
from grasp_bench.method import Knob, Method, RunContext, configured


class DataMixing(Method):
    task_inputs = ("generic_prompts",)
    knobs = {"max_share": Knob(float, low=0, high=1), "response_tokens": Knob(int, low=1)}

    def __init__(self, name: str = "mixing", **given):
        p = configured(name, given, home="mixing")  # conf/method/mixing.yaml: the one place the defaults live
        super().__init__(name, **p)  # checks the knobs and sets them

    @property
    def share(self) -> float:
        return self.strength * self.max_share

    def prepare(self, ctx: RunContext) -> None:
        chosen = seeded_rows(len(ctx.train_rows), self.share, ctx.cfg.seed)
        if not chosen:
            return
        chats = base_replies(ctx, self.name, self.response_tokens)
        for j, i in enumerate(chosen):
            ctx.train_rows[i] = {"messages": chats[j % len(chats)]}
        ctx.diagnostics.update({f"{self.name}/rows": len(chosen),
                                f"{self.name}/share": len(chosen) / len(ctx.train_rows)})
