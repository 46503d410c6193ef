"""Judgments -> the flat metrics dict of a run (the contract behind results.csv and the W&B summary).

Each metric of the task config is `{split, scorer}` (the row value is that score) or `{split, fn}`
(the row value is fn(scores of the row by scorer name); a task's row functions live in its package, e.g.
grasp_bench.tasks.em_eval.metrics.em_pct over `aligned` and `coherent`).
Every metric `eval/x` comes with `eval/x_n` (rows it rests on), `eval/x_n_unscored` (rows without a
value, not in the mean) and a bootstrap 95% CI `eval/x_ci_low`, `eval/x_ci_high`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

import hydra.utils
import numpy as np

X, Y = TASK_SCORE, SPURIOUS_RATE = "eval/task_score", "eval/spurious_rate"  # every task's trade-off axes


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0,
                 minus: np.ndarray | None = None) -> tuple[float, float]:
    """95% bootstrap CI of mean(values), or of mean(values) - mean(minus) resampling both."""
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(n_boot, len(values)), replace=True).mean(axis=1)
    if minus is not None:
        means = means - rng.choice(minus, size=(n_boot, len(minus)), replace=True).mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def summarise(key: str, values: Iterable[float | None]) -> dict[str, float]:
    values = list(values)
    scored = np.array([v for v in values if v is not None], dtype=float)
    low, high = bootstrap_ci(scored)
    return {
        key: float(scored.mean()) if len(scored) else float("nan"),
        f"{key}_n": len(values),
        f"{key}_n_unscored": len(values) - len(scored),
        f"{key}_ci_low": low,
        f"{key}_ci_high": high,
    }


def scores_by_row(judgments: Iterable[Mapping]) -> dict[str, dict[tuple[str, int], dict[str, float | None]]]:
    """split -> (id, sample) -> scorer -> score."""
    table: dict = defaultdict(lambda: defaultdict(dict))
    for j in judgments:
        table[j["split"]][(j["id"], j["sample"])][j["scorer"]] = j["score"]
    return table


def compute(metric_specs: Mapping[str, Mapping], judgments: Iterable[Mapping]) -> dict[str, float]:
    table = scores_by_row(judgments)
    out: dict[str, float] = {}
    for key, spec in metric_specs.items():
        rows = table.get(spec["split"], {}).values()
        if "fn" in spec:
            fn: Callable = hydra.utils.get_method(spec["fn"])
            values = [fn(r) for r in rows]
        else:
            values = [r.get(spec["scorer"]) for r in rows]
        out.update(summarise(key, values))
    return out
