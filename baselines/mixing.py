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
from grasp_bench.method import Method, RunContext


class DataMixing(Method):
    task_inputs = ("generic_prompts",)

    def __init__(self, name: str = "mixing", strength: float = 1.0, grid: list[float] | None = None,
                 max_share: float = 0.5, response_tokens: int = 128):
        super().__init__(name, strength, grid)
        self.max_share, self.response_tokens = max_share, response_tokens

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
