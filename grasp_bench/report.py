"""Every `metrics/<judge>.json` under a runs root -> results.csv, results.md and one trade-off plot per
(task, model, judge): x = eval/task_score, y = eval/spurious_rate, one line per method variant through
its strengths (mean over seeds, error bars = the standard deviation over seeds; none for one seed),
base and naive SFT marked, the Pareto frontier drawn.

The verdict (`frontier`, the first table of each section of results.md): per method variant, over seeds,
- **cut at ≤ 3 points**: for each seed, the largest drop in `eval/spurious_rate` below naive SFT of the same seed
  (method=sft) among the variant's runs (its strength grid) whose `eval/task_score` is at least SFT's minus
  `TASK_COST` = 0.03; strength 0 is naive SFT by the method contract, so a variant with no such run cuts 0.
  Reported as the mean over seeds with a 95% t-interval (`seed_ci`); variants are ranked by the mean (equal means
  share a rank), and two whose intervals overlap are within noise of each other (said in the table; one seed has
  no interval).
- **area dominated**: for each seed, the area of the (task_score, 1 − spurious_rate) unit square dominated by the
  variant's points and SFT's (its strength 0), against the reference point task_score 0, spurious_rate 1 (the
  worst corner: the area is in [0, 1], 1 for a perfect task without spurious behaviour); mean and t-interval.

With two or more tasks verdicted for one model and judge, results.md opens with their verdicts side by side (each
method's cut and rank per task) and names the methods whose rank changes between tasks.

Cross-run metrics: a task's config may name functions under `report_metrics` (e.g. political_finance's
`eval/lean_drift` against the base run of the same seed); each is called with every metrics file of the task
and its columns are added to that row. The task config is the run's own config.yaml, else the shipped
conf/task/<task>.yaml when that has no such key.

A damaged metrics file or run config.yaml stops the report with one line naming it (exit code 2); the results
files of the last good report are kept.

    grasp-bench-report runs/                        # also run at the end of every grasp-bench multirun
    grasp-bench-report runs/ --wandb offline        # also log a job_type=report W&B run (table, scatter, PNGs)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from grasp_bench.artifacts import BadInput, check_json, write_text
from grasp_bench.data import function_at
from grasp_bench.jobs import one_line
from grasp_bench.layout import CONF_DIR, run_of_metrics
from grasp_bench.metrics import COUNTS, INTERVALS, X, Y

IDENTITY = ["task", "model", "method", "variant", "strength", "seed", "judge"]
__all__ = ["X", "Y", "aggregate", "collect", "main", "markdown", "summary_table"]


# A damaged metrics file stops the report (a table silently missing a run would mislead); the metrics stage
# rebuilds it from the run's kept judgments.
REMEDY = "delete it or rerun with 'force=[metrics]'"
NUMBERS = ("strength", "seed")  # besides eval/* and train/final_loss, which may also be null (nan)


def read_metrics(path: Path) -> dict:
    """One `metrics/<judge>.json` as a row, or a BadInput naming the file (and the key) when it is damaged."""
    row = check_json(path, REMEDY)
    if not isinstance(row, dict):
        raise BadInput(f"{path}: expected a JSON object, got {type(row).__name__}; {REMEDY}")
    missing = [k for k in IDENTITY if k not in row]
    if missing:
        raise BadInput(f"{path}: no {', '.join(map(repr, missing))} key{'s' * (len(missing) > 1)}; {REMEDY}")
    for key, value in row.items():
        nullable = key.startswith("eval/") or key == "train/final_loss"
        if (key in NUMBERS or nullable) and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) or value is None and nullable):
            raise BadInput(f"{path}: {key}={value!r}: expected a number; {REMEDY}")
    return row


def _declared(config: Path, key: str) -> list[str] | None:
    """The function paths `config` lists under `key` (None without the key), or a BadInput naming the file."""
    try:
        declared = OmegaConf.select(OmegaConf.load(config), key)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise BadInput(f"{config}:{mark.line + 1 if mark else 1}: not valid YAML ({e.problem or e.context}); "
                       "fix or delete it") from None
    except (yaml.YAMLError, UnicodeDecodeError, OmegaConfBaseException) as e:
        raise BadInput(f"{config}: cannot read {key} ({one_line(e)}); fix or delete it") from None
    if declared is not None and not (OmegaConf.is_list(declared) and all(isinstance(f, str) for f in declared)):
        raise BadInput(f"{config}: {key}={declared!r}: expected a list of function paths (module.fn)")
    return None if declared is None else list(declared)


def report_metrics(metrics_file: Path, task: str) -> list:
    """The cross-run functions the task of this run declares (`task.report_metrics`), loaded; a BadInput naming
    the config that lists one that cannot be loaded."""
    config = run_of_metrics(metrics_file) / "config.yaml"
    key = "task.report_metrics"
    declared = _declared(config, key) if config.is_file() else None
    shipped = CONF_DIR / "task" / f"{task}.yaml"
    if declared is None and shipped.is_file():  # a run without the key (made before it existed, or copied results)
        config, key = shipped, "report_metrics"
        declared = _declared(config, key)
    fns = [function_at(name) for name in declared or []]
    if None in fns:
        raise BadInput(f"{config}: {key}: no such function {declared[fns.index(None)]!r}")
    return fns


def collect(runs_root: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(Path(runs_root).glob("**/metrics/*.json")):
        row = read_metrics(path)
        for fn in report_metrics(path, row["task"]):
            row.update(fn(path))
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=IDENTITY)
    df = pd.DataFrame(rows)
    first = [c for c in IDENTITY if c in df.columns]
    return df[first + sorted(c for c in df.columns if c not in first)].sort_values(first, kind="stable")


# Student t quantile t_{0.975, df} for a 95% CI of a mean over a few seeds (df = seeds - 1).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def seed_ci(mean: float, std: float, seeds: int) -> tuple[float, float]:
    """95% t-interval of the mean over seeds (nan with one seed: a single run has no seed variance)."""
    if seeds < 2 or pd.isna(std):
        return float("nan"), float("nan")
    half = T975[min(seeds - 1, 10)] * std / np.sqrt(seeds)  # beyond 10 seeds: df = 10's, slightly wide
    return mean - half, mean + half


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and 95% t-interval over seeds per (task, model, judge, variant, strength), with the number of seeds."""
    keys = ["task", "model", "judge", "variant", "strength"]
    value_cols = [c for c in df.columns if c.startswith("eval/") and not c.endswith(INTERVALS + COUNTS)] + (
        ["train/final_loss"] if "train/final_loss" in df else [])
    agg = df.groupby(keys, sort=False)[value_cols].agg(["mean", "std"])
    agg.columns = [f"{c}_{s}" if s == "std" else c for c, s in agg.columns]
    agg["seeds"] = df.groupby(keys, sort=False)["seed"].nunique()
    # a seed without a value (every row unscored, or a metric the run lacks) is in neither the mean nor the interval
    valued = df.groupby(keys, sort=False)[value_cols].count()
    for c in value_cols:
        low_high = [seed_ci(m, sd, k) for m, sd, k in zip(agg[c], agg[f"{c}_std"], valued[c])]
        agg[f"{c}_seed_ci_low"], agg[f"{c}_seed_ci_high"] = zip(*low_high) if low_high else ((), ())
    n_cols = [c for c in df.columns if c.endswith(COUNTS)]
    agg = agg.join(df.groupby(keys, sort=False)[n_cols].sum()) if n_cols else agg
    return agg.reset_index()


TASK_COST = 0.03  # the largest loss of eval/task_score against naive SFT (same seed) at which a cut counts
REFERENCE = (0.0, 1.0)  # (task_score, spurious_rate): the hypervolume's reference point, the worst corner


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float] = REFERENCE) -> float:
    """Area of the (task_score, spurious_rate) region dominated by `points` (higher task, lower spurious) and
    bounded by `reference`: the union of the rectangles [ref_x, x] × [y, ref_y]."""
    rx, ry = reference
    pts = sorted(((x, y) for x, y in points if x > rx and y < ry), reverse=True)  # task descending
    area, best = 0.0, ry
    for i, (x, y) in enumerate(pts):
        best = min(best, y)
        area += (x - (pts[i + 1][0] if i + 1 < len(pts) else rx)) * (ry - best)
    return area


def frontier(df: pd.DataFrame, cost: float = TASK_COST) -> pd.DataFrame:
    """The verdict per (task, model, judge, variant), base and sft excepted (see the module docstring): per seed the
    cut at a task cost ≤ `cost` and the area dominated, then mean, std and 95% t-interval over the seeds that have
    an SFT run; `points` = runs used, `strengths` = the strength chosen per seed (0: none qualified), `n` and
    `n_unscored` = the spurious-rate rows behind the chosen runs (SFT's where none qualified), summed over seeds."""
    rows = []
    if X not in df or Y not in df:
        return pd.DataFrame()
    for (task, model, judge), part in df.groupby(["task", "model", "judge"], sort=False):
        counts = [c for c in (f"{Y}_n", f"{Y}_n_unscored") if c in part]
        sft = part[part["method"] == "sft"].groupby("seed")[[X, Y, *counts]].mean()
        others = part[~part["method"].isin(["base", "sft"])]
        for variant, runs in others.groupby("variant", sort=False):
            cuts, areas, chosen, points, n, unscored = [], [], [], 0, 0, 0
            for seed, r in runs.groupby("seed"):
                if seed not in sft.index:
                    continue
                task0, spur0 = sft.loc[seed, X], sft.loc[seed, Y]
                if pd.isna(task0) or pd.isna(spur0):  # SFT's rate unknown (all unscored): no cut for this seed
                    continue
                ok = r[r[X] >= task0 - cost - 1e-9]
                gain = spur0 - ok[Y]
                if len(ok) and gain.max() > 0:
                    best = ok.loc[gain.idxmax()]
                    cuts.append(float(gain.max()))
                    chosen.append(f"{best['strength']:g}")
                else:  # strength 0: naive SFT itself
                    best = sft.loc[seed]
                    cuts.append(0.0)
                    chosen.append("0")
                n += int(best.get(f"{Y}_n", 0) or 0)
                unscored += int(best.get(f"{Y}_n_unscored", 0) or 0)
                areas.append(hypervolume([(task0, spur0), *zip(r[X], r[Y])]))
                points += len(r)
            if not cuts:
                continue
            row = {"task": task, "model": model, "judge": judge, "variant": variant, "seeds": len(cuts),
                   "points": points, "strengths": " / ".join(chosen), "n": n, "n_unscored": unscored}
            for name, values in (("cut", cuts), ("area", areas)):
                mean, std = float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
                row |= {name: mean, f"{name}_std": std}
                row[f"{name}_ci_low"], row[f"{name}_ci_high"] = seed_ci(mean, std, len(values))
            rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values(["task", "model", "judge", "cut"], ascending=[True, True, True, False],
                           kind="stable").reset_index(drop=True) if len(out) else out


def _within_noise(part: pd.DataFrame) -> list[str]:
    """Per row: the other variants whose cut interval overlaps this one's."""
    out = []
    for _, r in part.iterrows():
        if pd.isna(r["cut_ci_low"]):
            out.append("– (one seed)")
            continue
        near = [o["variant"] for _, o in part.iterrows() if o["variant"] != r["variant"]
                and pd.notna(o["cut_ci_low"]) and o["cut_ci_low"] <= r["cut_ci_high"] and r["cut_ci_low"] <= o["cut_ci_high"]]
        out.append(", ".join(near) or "none")
    return out


def frontier_markdown(front: pd.DataFrame, task: str, model: str, judge: str) -> list[str]:
    part = front[(front["task"] == task) & (front["model"] == model) & (front["judge"] == judge)] if len(front) else front
    if not len(part):
        return []

    def cell(r, name):
        ci = "" if pd.isna(r[f"{name}_ci_low"]) else f" [{r[f'{name}_ci_low']:.2f}, {r[f'{name}_ci_high']:.2f}]"
        return f"{r[name]:.3f}{ci}"

    head = ["rank", "method", "seeds", f"spurious cut at ≤ {TASK_COST * 100:g} points task cost", "strength per seed",
            "area dominated", "within noise of", "runs", "n", "unscored"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ranks = shared_ranks(list(part["cut"]))
    for rank, ((_, r), near) in zip(ranks, zip(part.iterrows(), _within_noise(part))):
        lines.append("| " + " | ".join([str(rank), r["variant"], str(r["seeds"]), cell(r, "cut"), r["strengths"],
                                        cell(r, "area"), near, str(r["points"]), str(r["n"]), str(r["n_unscored"])])
                     + " |")
    return lines + ["", f"The verdict: per seed, the largest drop of spurious_rate below naive SFT (same seed) among "
                    f"the method's runs whose task_score is at most {TASK_COST:g} below SFT's (0 if none), then the "
                    "mean [95% t-interval] over seeds; ranked by it; methods whose intervals overlap are within noise. "
                    f"Area dominated: of the (task_score, 1 − spurious_rate) square by the method's points and SFT's, "
                    f"reference point task_score {REFERENCE[0]:g}, spurious_rate {REFERENCE[1]:g}. n / unscored: "
                    "spurious-rate rows of the chosen runs (SFT's where none qualified), summed over seeds.", ""]


def across_tasks_markdown(front: pd.DataFrame) -> list[str]:
    """Per (model, judge) verdicted on two or more tasks: every variant's cut and rank on each task side by side,
    and the variants whose rank differs between tasks (where a one-organism ranking would mislead)."""
    lines = []
    if not len(front):
        return lines
    for (model, judge), part in front.groupby(["model", "judge"], sort=False):
        tasks = list(dict.fromkeys(part["task"]))
        if len(tasks) < 2:
            continue
        by_task = {}
        for t in tasks:
            rows = part[part["task"] == t]
            by_task[t] = dict(zip(rows["variant"], zip(rows["cut"], shared_ranks(list(rows["cut"])))))
        variants = list(dict.fromkeys(v for t in tasks for v in by_task[t]))
        lines += [f"### Across tasks: {model} (judge: {judge})", "",
                  "| method | " + " | ".join(f"{t}: cut (rank)" for t in tasks) + " |", "|" + "---|" * (len(tasks) + 1)]
        for v in variants:
            cells = ["{:.3f} ({})".format(*by_task[t][v]) if v in by_task[t] else "– (not run)" for t in tasks]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        moved = [v for v in variants if len({by_task[t][v][1] for t in tasks if v in by_task[t]}) > 1]
        lines += ["", "Rank changes between tasks: " + (", ".join(moved) if moved else "none") + " (cut: the verdict "
                  "of each task's section; rank among the methods run on that task).", ""]
    return lines


def shared_ranks(cuts: list[float]) -> list[int]:
    """1 + the number of larger cuts: equal cuts share the best rank (two methods that both cut 0 are tied)."""
    return [1 + sum(other > cut + 1e-12 for other in cuts) for cut in cuts]


def _order(metric_cols: list[str]) -> list[str]:
    first = [c for c in (X, Y) if c in metric_cols]
    return first + [c for c in metric_cols if c not in first]


def markdown(table: pd.DataFrame, front: pd.DataFrame | None = None) -> str:
    """Per (task, model, judge): the verdict (`frontier`, when given), then one table of every run group, base and
    sft first (with the verdict, the tasks side by side per model come first: `across_tasks_markdown`); n, unscored
    (and excluded, where metrics files report it) per metric, summed over seeds."""
    metric_cols = _order([c for c in table.columns if c.startswith("eval/")
                          and not c.endswith(("_std", *COUNTS, "_seed_ci_low", "_seed_ci_high"))])
    counts = [s for s in COUNTS if any(f"{c}{s}" in table for c in metric_cols)]
    names = {"_n": "n", "_n_unscored": "unscored", "_n_excluded": "excluded"}
    lines = across_tasks_markdown(front) if front is not None else []
    rank = {"base": 0, "sft": 1}
    for (task, model, judge), part in table.groupby(["task", "model", "judge"], sort=False):
        part = part.sort_values(["variant", "strength"], key=lambda c: c.map(lambda v: (rank.get(v, 2), v))
                                if c.name == "variant" else c, kind="stable")
        lines += [f"### {task} / {model} (judge: {judge})", ""]
        if front is not None:
            lines += frontier_markdown(front, task, model, judge)
        head = ["method", "strength", "seeds", *(c.removeprefix("eval/") for c in metric_cols), *map(names.get, counts)]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, r in part.iterrows():
            cells = [r["variant"], f"{r['strength']:g}", str(r["seeds"])]
            for c in metric_cols:
                std = r.get(f"{c}_std")
                spread = f" ± {std:.3f} [{r[f'{c}_seed_ci_low']:.2f}, {r[f'{c}_seed_ci_high']:.2f}]"
                cells.append(f"{r[c]:.3f}" + (spread if r["seeds"] > 1 and pd.notna(std) else ""))
            for s in counts:
                cells.append("/".join(str(int(r[f"{c}{s}"])) for c in metric_cols if pd.notna(r.get(f"{c}{s}"))))
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"{', '.join(map(names.get, counts))}: rows per metric (in column order), summed over seeds; "
                  "with several seeds: mean ± std [95% t-interval] over seeds.", ""]
    return "\n".join(lines)


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another with higher x and lower y, sorted by x."""
    front = [p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)]
    return sorted(set(front))


MARKERS = "o^vD<>PXhp"  # with tab20's dark then light hues: more methods than the default cycle's 10 colours


def plot(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if X not in df or Y not in df:
        return paths
    tab20 = matplotlib.colormaps["tab20"].colors
    colors = tab20[0::2] + tab20[1::2]
    for (task, model, judge), part in df.groupby(["task", "model", "judge"], sort=False):
        fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
        means = part.groupby(["variant", "strength"])[[X, Y]].mean()
        spread = part.groupby(["variant", "strength"])[[X, Y]].std().fillna(0.0)
        for i, (variant, v) in enumerate(means.groupby(level=0)):
            v = v.droplevel(0).sort_index()
            s = spread.loc[variant].reindex(v.index)
            kind = f"{MARKERS[i % len(MARKERS)]}-"
            if variant in ("base", "sft"):
                kind = "*" if variant == "base" else "s"
            ax.errorbar(v[X], v[Y], xerr=s[X], yerr=s[Y], fmt=kind, ms=11 if variant in ("base", "sft") else 6,
                        capsize=3, label=variant, color=colors[i % len(colors)])
            for strength, row in v.iterrows():
                if variant not in ("base", "sft") and len(v) > 1:
                    ax.annotate(f"{strength:g}", (row[X], row[Y]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        sft = part[part["method"] == "sft"]
        if len(sft):  # the task cost the verdict tolerates, against SFT's mean task score
            ax.axvline(sft[X].mean() - TASK_COST, ls=":", color="grey", lw=1,
                       label=f"SFT task − {TASK_COST * 100:g} points")
        front = pareto(list(zip(means[X], means[Y])))
        if len(front) > 1:
            ax.plot(*zip(*front), ls="--", color="grey", lw=1, label="Pareto frontier")
        ax.set_xlabel("task score (higher is better)")
        ax.set_ylabel("spurious-behaviour rate (lower is better)")
        ax.set_title(f"{task} / {model} (judge: {judge})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"tradeoff_{task}_{model}_{judge}.png"
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _seeds(seeds) -> str:
    seeds = sorted(int(k) for k in set(seeds))
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def missing_verdicts(df: pd.DataFrame) -> list[str]:
    """One line per verdict the report cannot give, or gives on fewer seeds than the method has, saying why: the
    verdict compares each method with naive SFT (method=sft) of the same seed."""
    notes = []
    if X not in df or Y not in df:
        return notes
    for (task, model, judge), part in df.groupby(["task", "model", "judge"], sort=False):
        where = f"{task}/{model} (judge {judge})"
        sft = part[part["method"] == "sft"]
        others = part[~part["method"].isin(["base", "sft"])]
        if not len(others):
            continue
        if not (part["method"] == "base").any():
            notes.append(f"{where}: no `base` run: the plot and tables have no base-model point; add method=base for "
                         f"{_seeds(others['seed'])}")
        if not len(sft):
            notes.append(f"{where}: no verdict: no `sft` run; add method=sft for {_seeds(others['seed'])}")
            continue
        scored = set(sft.dropna(subset=[X, Y])["seed"])
        for variant, runs in others.groupby("variant", sort=False):
            absent = set(runs["seed"]) - set(sft["seed"])
            unscored = set(runs["seed"]) & set(sft["seed"]) - scored
            left = "no verdict" if absent | unscored == set(runs["seed"]) else "the verdict leaves out"
            if absent:
                notes.append(f"{where}: {variant}: {left} {_seeds(absent)}: no `sft` run of that seed; "
                             f"add method=sft for {_seeds(absent)}")
            if unscored:
                notes.append(f"{where}: {variant}: {left} {_seeds(unscored)}: sft's {X} or {Y} of that seed is unscored")
    return notes


def aggregate(runs_root: str | Path, quiet: bool = False, logger_cfg=None) -> dict:
    """Write results.csv, results.md and plots/ under runs_root; print the table and plot paths, and a note per
    missing verdict; mirror them to the tracker that `logger_cfg` (a conf/logger/*.yaml node) names. A folder
    without metrics files is a BadInput (it is not a runs root, or no run got to its metrics stage)."""
    runs_root = Path(runs_root).expanduser()
    df = collect(runs_root)
    if df.empty:
        raise BadInput(f"{runs_root}: no metrics files (<task>/<model>/<method>/strength=<s>/seed=<k>/metrics/"
                       "<judge>.json) under it: name the runs root your runs wrote to (their paths.runs)")
    write_text(runs_root / "results.csv", df.to_csv(index=False))
    table, front = summary_table(df), frontier(df)
    md = markdown(table, front)
    write_text(runs_root / "results.md", md)
    plots = plot(df, runs_root / "plots")
    notes = missing_verdicts(df)
    if logger_cfg is not None:
        from grasp_bench.tracking import make_logger

        make_logger(logger_cfg).report(runs_root, df, plots, seed_means=table, verdict=front)
    if not quiet:
        print(md)
        print(f"results: {runs_root / 'results.csv'}")
        for p in plots:
            print(f"trade-off plot: {p}")
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    return {"rows": len(df), "plots": plots, "notes": notes}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="grasp-bench-report", description=__doc__.splitlines()[0])
    parser.add_argument("runs_root", nargs="?", default="runs")
    parser.add_argument("--wandb", metavar="MODE", choices=["disabled", "offline", "online"], default="disabled",
                        help="also log a job_type=report W&B run (default: disabled)")
    parser.add_argument("--wandb-project", default="grasp-bench")
    parser.add_argument("--wandb-entity", default=None)
    args = parser.parse_args(argv)
    logger_cfg = None
    if args.wandb != "disabled":
        logger_cfg = {"_target_": "grasp_bench.tracking.WandbLogger", "mode": args.wandb,
                      "project": args.wandb_project, "entity": args.wandb_entity, "settings": {"console": "off"}}
    try:
        root = Path(args.runs_root)
        if not root.is_dir():
            raise BadInput(f"{args.runs_root}: " + ("is not a directory" if root.exists() else "no such directory"))
        aggregate(args.runs_root, logger_cfg=logger_cfg)
    except BadInput as e:  # as grasp-bench does: one line, exit code 2 (the previous results files are kept)
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
