"""Judgments -> the flat metrics dict of a run (the contract behind results.csv and the W&B summary).

Each metric of the task config is `{split, scorer}` (the row value is that score) or `{split, fn}`
(the row value is fn(scores of the row by scorer name); a task's row functions live in its package, e.g.
grasp_bench.tasks.em_eval.metrics.em_pct over `aligned` and `coherent`).
A row is one generation of the split (one (id, sample)). A row function returns, per row:

- a number: the row's value, in the mean;
- `None`: *unscored*, the judge could not score what the metric needs (no number, or a score missing);
- `EXCLUDED`: *excluded*, the row is scored but the metric's own condition leaves it out (e.g.
  em_among_coherent_pct only counts rows with coherent >= 50). Unscored is decided first: a row the judge
  could not score is unscored, never excluded.

Every metric `eval/x` comes with
- `eval/x_n`: all rows of its split; `eval/x_n_unscored`, `eval/x_n_excluded`: of those, the unscored and
  the excluded rows. The mean rests on the other n - n_unscored - n_excluded rows (nan when none);
- `eval/x_ci_low`, `eval/x_ci_high`: a percentile bootstrap 95% CI of the mean (2,000 resamples, seed 0);
- `eval/x_wilson_low`, `eval/x_wilson_high`: for a proportion, the Wilson score 95% interval, which unlike
  the bootstrap is not degenerate at 0 or 1 (0 of 40 rows: [0, 0.088]); nan for other metrics.
A metric is a proportion when its row function declares it (`@proportion(scale)`: every value is 0 or
scale, e.g. 100 for a percentage) or, for a `{split, scorer}` metric, when every scored value is 0 or 1.
docs/metrics.md lists each task's metrics with their rows and exclusions.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

import hydra.utils
import numpy as np

X, Y = TASK_SCORE, SPURIOUS_RATE = "eval/task_score", "eval/spurious_rate"  # every task's trade-off axes


class _Excluded:
    def __repr__(self) -> str:
        return "EXCLUDED"


EXCLUDED = _Excluded()  # a row function's answer for a scored row that the metric's own condition leaves out
COUNTS = ("_n", "_n_unscored", "_n_excluded")  # suffixes of a metric's row counts
INTERVALS = ("_ci_low", "_ci_high", "_wilson_low", "_wilson_high")  # suffixes of its 95% intervals
Z95 = 1.959963984540054  # the standard normal's 0.975 quantile


def proportion(scale: float = 1.0) -> Callable[[Callable], Callable]:
    """Declare a row function a proportion: every value it returns is 0 or `scale`."""

    def mark(fn: Callable) -> Callable:
        fn.proportion_scale = float(scale)
        return fn

    return mark


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


def wilson_ci(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (nan for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # at 0 (or n) successes the bound is exactly 0 (or 1); centre - half leaves a rounding residue of ~1e-17
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def summarise(key: str, values: Iterable, scale: float | None = None) -> dict[str, float]:
    """The metric `key` over row values (numbers, None = unscored, EXCLUDED); see the module docstring.
    `scale`: the metric is a proportion whose values are 0 or scale; None: one when every value is 0 or 1."""
    values = list(values)
    kept = np.array([v for v in values if v is not None and v is not EXCLUDED], dtype=float)
    n_unscored = sum(v is None for v in values)
    low, high = bootstrap_ci(kept)
    if scale is None and len(kept) and np.isin(kept, (0.0, 1.0)).all():
        scale = 1.0
    if scale is not None and not np.isin(kept, (0.0, scale)).all():
        raise ValueError(f"{key}: a proportion of scale {scale:g} got values {sorted(set(kept.tolist()))[:5]}")
    w_low, w_high = (math.nan, math.nan) if scale is None else wilson_ci(float((kept == scale).sum()), len(kept))
    scale = 1.0 if scale is None else scale
    return {
        key: float(kept.mean()) if len(kept) else float("nan"),
        f"{key}_n": len(values),
        f"{key}_n_unscored": n_unscored,
        f"{key}_n_excluded": len(values) - len(kept) - n_unscored,
        f"{key}_ci_low": low,
        f"{key}_ci_high": high,
        f"{key}_wilson_low": w_low * scale,
        f"{key}_wilson_high": w_high * scale,
    }


def scores_by_row(judgments: Iterable[Mapping]) -> dict[str, dict[tuple[str, int], dict[str, float | None]]]:
    """split -> (id, sample) -> scorer -> score."""
    table: dict = defaultdict(lambda: defaultdict(dict))
    for j in judgments:
        table[j["split"]][(j["id"], j["sample"])][j["scorer"]] = j["score"]
    return table


def row_values(metric_specs: Mapping[str, Mapping], judgments: Iterable[Mapping]) -> dict[str, dict]:
    """metric -> (id, sample) -> the row's value (a number, None = unscored, EXCLUDED): the rows behind every
    metric, which the report's verdict splits by prompt into a selection and a test part (grasp_bench/verdict.py)."""
    table = scores_by_row(judgments)
    out: dict[str, dict] = {}
    for key, spec in metric_specs.items():
        rows = table.get(spec["split"], {})
        if "fn" in spec:
            fn: Callable = hydra.utils.get_method(spec["fn"])
            out[key] = {row: fn(scores) for row, scores in rows.items()}
        else:
            out[key] = {row: scores.get(spec["scorer"]) for row, scores in rows.items()}
    return out


def proportion_scale(spec: Mapping) -> float | None:
    """The declared proportion scale of a metric spec's row function (None: undeclared, or a scorer metric)."""
    return getattr(hydra.utils.get_method(spec["fn"]), "proportion_scale", None) if "fn" in spec else None


def compute(metric_specs: Mapping[str, Mapping], judgments: Iterable[Mapping]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, values in row_values(metric_specs, judgments).items():
        out.update(summarise(key, values.values(), proportion_scale(metric_specs[key])))
    return out
