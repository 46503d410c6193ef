"""Every `metrics/<judge>.json` under a runs root -> results.csv, results.md and one trade-off plot per
(task, model, judge): x = eval/task_score, y = eval/spurious_rate, one line per method variant through
its strengths (mean over seeds, error bars = the standard deviation over seeds; none for one seed),
base and naive SFT marked, the Pareto frontier drawn.

The verdict (grasp_bench/verdict.py, docs/verdict.md; the first table of each section of results.md, and
verdict.json beside results.csv): every evaluation split is divided by a seeded hash of each prompt into a selection
and a test part; each method's operating point (strength, and variant) is chosen on the selection part and its
headline, the spurious rate at `verdict.task_cost` (3 points) of task cost interpolated along its curve, is reported
on the test part with a 95% paired bootstrap interval over test prompts and seeds, the area dominated beside it, and
the pairs of methods that differ. It is computed from the runs' kept judgments (old runs included, nothing judged
again); tasks with `role: development` are left out of it.

With two or more tasks verdicted for one model and judge, results.md opens with their verdicts side by side (each
method's headline and rank per task, the tasks grouped by the kind of trait their config declares, `task.kind`) and
names the methods whose rank changes between tasks.

prompts.csv.gz beside verdict.json holds the per-prompt sums the verdict is computed from (verdict.prompt_rows of every
run), so a verdict can be recomputed, and runs of several sessions merged, without the run directories
(grasp_bench/docs_tables.py). A `next:` line per method whose selected operating point rests on fewer than
`verdict.power.seeds` (5) seeds says which of seeds 0-4 to add (docs/verdict.md, "Running a verdict sweep"); under each
verdict a line says which methods meet the power goal (`power_line`).

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
import functools
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from grasp_bench import verdict
from grasp_bench.artifacts import BadInput, check_json, read_jsonl, write_bytes, write_json, write_text
from grasp_bench.data import function_at
from grasp_bench.identity import TIMED, stage_seconds
from grasp_bench.jobs import one_line
from grasp_bench.layout import CONF_DIR, run_of_metrics
from grasp_bench.metrics import COUNTS, INTERVALS, X, Y
from grasp_bench.verdict import within_noise

IDENTITY = ["task", "model", "method", "variant", "strength", "seed", "judge"]
RESULTS, VERDICT = "results.csv", "verdict.json"  # written beside verdict.PROMPTS (docs_tables keeps them per organism)
__all__ = ["X", "Y", "aggregate", "collect", "main", "markdown", "summary_table"]


# A damaged metrics file stops the report (a table silently missing a run would mislead); the metrics stage
# rebuilds it from the run's kept judgments.
REMEDY = "delete it or rerun with 'force=[metrics]'"
NUMBERS = ("strength", "seed")  # besides eval/* and train/final_loss, which may also be null (nan)
SECONDS = "seconds/"  # results.csv's stage wall times of a run (identity.stage_seconds), summed per group as its cost


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


@functools.lru_cache(maxsize=256)
def _load_config(path: Path, _mtime_ns: int):
    """A config file, parsed once per version (a run's config.yaml is read for several keys)."""
    try:
        return OmegaConf.load(path)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise BadInput(f"{path}:{mark.line + 1 if mark else 1}: not valid YAML ({e.problem or e.context}); "
                       "fix or delete it") from None
    except (yaml.YAMLError, UnicodeDecodeError, OmegaConfBaseException) as e:
        raise BadInput(f"{path}: cannot read it ({one_line(e)}); fix or delete it") from None


def _declared(config: Path, key: str) -> list[str] | None:
    """The function paths `config` lists under `key` (None without the key), or a BadInput naming the file."""
    try:
        declared = OmegaConf.select(_load_config(config, config.stat().st_mtime_ns), key)
    except OmegaConfBaseException as e:
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
        # what it cost, from the stage records: not in the metrics file, which a rerun reproduces byte for byte
        row.update(stage_seconds(run_of_metrics(path)))
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
    # the cost: stage wall times summed per group, and how many of its runs recorded theirs
    seconds = [c for c in df.columns if c.startswith(SECONDS)]
    timed = df[seconds].notna().any(axis=1) if seconds else pd.Series(False, index=df.index)
    agg["runs"] = df.groupby(keys, sort=False).size()
    agg["timed_runs"] = timed.groupby([df[k] for k in keys], sort=False).sum()
    if seconds:
        agg = agg.join(df.groupby(keys, sort=False)[seconds].sum())
    return agg.reset_index()


def _config_value(run: Path, key: str, shipped: Path, shipped_key: str):
    """`key` of the run's config.yaml, else `shipped_key` of a shipped config (a run made before the key existed,
    or copied results without a config); a BadInput naming a run config that cannot be read. A shipped group
    config (conf/task/<task>.yaml) is read as the node it becomes (`task`), its interpolations resolved where they
    can be (None where they cannot: outside a composed job they may point at nothing)."""
    for path, k, node in ((run / "config.yaml", key, None), (shipped, shipped_key, shipped.parent.name)):
        if not path.is_file():
            continue
        cfg = _load_config(path, path.stat().st_mtime_ns)
        try:
            if node in ("task", "method", "model"):
                value = OmegaConf.select(OmegaConf.create({node: cfg}), f"{node}.{k}")
            else:
                value = OmegaConf.select(cfg, k)
            if OmegaConf.is_config(value):
                value = OmegaConf.to_container(value, resolve=True)
        except OmegaConfBaseException as e:
            if node is not None:
                return None
            raise BadInput(f"{path}: cannot read {k} ({one_line(e)}); fix or delete it") from None
        if value is not None:
            return value
    return None


def task_labels(run: Path, task: str, where: Path) -> tuple[str, str]:
    """A task's role (`task.role`: test, the default, or development) and kind of trait (`task.kind`, unspecified
    without the key), read as any task key (`_config_value`); a BadInput naming `where`."""
    shipped = CONF_DIR / "task" / f"{task}.yaml"
    labels = []
    for key, allowed, default in (("role", verdict.ROLES, verdict.DEFAULT_ROLE), ("kind", verdict.KINDS, verdict.UNSPECIFIED)):
        value = _config_value(run, f"task.{key}", shipped, key)
        if value is not None and value not in allowed:
            raise BadInput(f"{where}: task.{key}={value!r}: expected one of {', '.join(allowed)}")
        labels.append(value or default)
    return labels[0], labels[1]


def verdict_inputs(runs_root: Path) -> tuple[pd.DataFrame, dict, dict, verdict.Settings | None, list[Path]]:
    """What the verdict is made of, read from the runs' kept judgments (no run is judged again): the per-prompt
    sums of every run (verdict.prompt_rows), each task's role and kind (`task_labels`), the settings
    (`verdict` of the runs' config.yaml, else conf/config.yaml's; runs that disagree are a BadInput), and the
    runs left out because they keep no judgments or generations."""
    frames, roles, kinds, settings, source, missing = [], {}, {}, None, None, []
    for path in sorted(Path(runs_root).glob("**/metrics/*.json")):
        row = read_metrics(path)
        run = run_of_metrics(path)
        node = _config_value(run, "verdict", CONF_DIR / "config.yaml", "verdict")
        where = run / "config.yaml" if (run / "config.yaml").is_file() else CONF_DIR / "config.yaml"
        these = verdict.Settings.from_config(node, str(where))
        if settings is not None and these != settings:
            raise BadInput(f"{where}: verdict={node} differs from {source}'s; one report, one verdict rule: "
                           "rerun the report over runs made with the same verdict settings")
        settings, source = these, where
        roles[row["task"]], kinds[row["task"]] = task_labels(run, row["task"], where)
        judgments, generations = run / "judgments" / f"{row['judge']}.jsonl", run / "generations.jsonl"
        specs = _config_value(run, "task.metrics", CONF_DIR / "task" / f"{row['task']}.yaml", "metrics") if (
            judgments.is_file() and generations.is_file()) else None
        if not specs:
            missing.append(run)
            continue
        identity = {k: row[k] for k in IDENTITY}
        frames.append(verdict.prompt_rows(identity, specs, read_jsonl(generations), read_jsonl(judgments), settings))
    prompts = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return prompts, roles, kinds, settings, missing


def _ci(low, high) -> str:
    return "" if pd.isna(low) else f" [{low:.3f}, {high:.3f}]"


def _goal_number(value: float) -> str:
    """A power goal as written: 0.10 with two decimals (a whole percent), else as many as it has (0.001)."""
    return f"{value:.2f}" if abs(value * 100 - round(value * 100)) < 1e-9 else f"{value:g}"


def power_line(rows: pd.DataFrame, settings: verdict.Settings) -> str:
    """Whether the methods of one verdict meet the power goal (each row's `meets_power`), naming every one short
    of it with its half-width and the seeds its selected point rests on."""
    meets = [bool(m) for m in rows["meets_power"]] if "meets_power" in rows else [False] * len(rows)
    short = []
    for r, ok in zip(rows.to_dict("records"), meets):
        if ok:
            continue
        width = "no interval" if pd.isna(r.get("half_width")) else f"{r['half_width']:.3f}"
        seeds = r.get("selected_seeds")
        k = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}" if isinstance(seeds, list) else "seeds not recorded"
        short.append(f"{r['method']} ({width}, {k})")
    goal = (f"half-width <= {_goal_number(settings.power_half_width)} with >= {settings.power_seeds} seeds at the selected "
            "point")
    return (f"Power: {sum(meets)} of {len(meets)} methods meet the goal ({goal})"
            + (f"; short: {', '.join(short)} (too few seeds: the `next:` lines name the runs to add; too wide on "
               "enough seeds: more seeds or test prompts; docs/verdict.md, \"Power\")." if short else "."))


def verdict_markdown(front: pd.DataFrame, pairs: pd.DataFrame, settings: verdict.Settings, task: str, model: str,
                     judge: str) -> list[str]:
    """The verdict of one (task, model, judge): the methods ranked by the headline on the test part, each with its
    interval, the operating point chosen on the selection part, and the pairs that differ."""
    part = front[(front["task"] == task) & (front["model"] == model) & (front["judge"] == judge)] if len(front) else front
    if not len(part):
        return []
    rank_on = part["ranks_on"].iloc[0].removeprefix("eval/")
    also = [m for m in settings.rank_on if m in part.columns and m != part["ranks_on"].iloc[0]]
    cost = f"{settings.task_cost * 100:g} points"
    head = ["method", "variant", f"{rank_on} at {cost} task cost (test)", "half-width",
            *(f"{m.removeprefix('eval/')} there (test)"
            for m in also), "task cost there (test)", "area dominated (test)",
            "operating point (chosen on selection)", "within noise of", "seeds", "n", "unscored"]
    lines = [f"Verdict (ranks on `{rank_on}`, split `{part['split'].iloc[0]}`): operating points chosen on the "
             f"selection part, every figure on the test part only ({int(part['test_prompts'].iloc[0])} prompts of "
             f"that split; {part['selected_on'].iloc[0]}).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in part.iterrows():
        near = within_noise(pairs, r["method"], task, model, judge)
        width = r.get("half_width")
        cells = [r["method"], r["variant"], f"{r['headline']:.3f}{_ci(r['low'], r['high'])}",
                 "–" if pd.isna(width) else f"{width:.3f}",
                 *(f"{r[m]:.3f}{_ci(r[f'{m}_low'], r[f'{m}_high'])}" for m in also),
                 f"{r['task_cost']:.3f}{_ci(r['task_cost_low'], r['task_cost_high'])}",
                 f"{r['area']:.3f}{_ci(r['area_low'], r['area_high'])}", str(r["operating_point"]),
                 ", ".join(near) or "none", str(int(r["seeds"])), f"{int(r['n'])}/{int(r['n_task'])}",
                 f"{int(r['n_unscored'])}/{int(r['n_task_unscored'])}"]
        lines.append("| " + " | ".join(cells) + " |")
    p = pairs[(pairs["task"] == task) & (pairs["model"] == model) & (pairs["judge"] == judge)] if len(pairs) else pairs
    differ = [f"{a} − {b} = {d:+.3f}{_ci(lo, hi)}" for a, b, d, lo, hi, x in
              zip(p.get("a", []), p.get("b", []), p.get("difference", []), p.get("low", []), p.get("high", []),
                  p.get("differ", [])) if x]
    return lines + ["", power_line(part, settings), "",
                    "Pairs that differ (paired bootstrap, 95% interval of the difference excludes 0): "
                    + ("; ".join(differ) if differ else "none") + "; every other pair is within noise.", "",
                    f"Headline: the lowest {rank_on} along the method's curve (seed means per strength, strength 0 "
                    f"= naive SFT, straight lines between strengths) where task_score is at most {cost} below SFT's; "
                    "the position is chosen on the selection part (and the variant, for a method run in several), "
                    "the figures are read at that position on the test part; a mixed operating point answers with "
                    "one of two neighbouring runs in that proportion. Intervals: 95% paired bootstrap over test "
                    f"prompts and seeds ({settings.resamples} resamples). Area: dominated by the variant's curve, "
                    f"reference task_score {verdict.REFERENCE[0]:g}, spurious_rate {verdict.REFERENCE[1]:g}. "
                    "n / unscored: test rows of the spurious split / of the task split behind the figure, summed "
                    "over seeds. docs/verdict.md.", ""]


def across_tasks_markdown(front: pd.DataFrame, kinds: dict | None = None, settings_of: dict | None = None
                          ) -> list[str]:
    """Per (model, judge) verdicted on two or more tasks: every method's headline and rank per task side by side,
    the tasks grouped by their kind of trait (`kinds`: task -> kind; unspecified where absent), the methods whose
    rank differs between tasks (where a one-organism ranking would mislead), one line per kind: each method's
    headlines on the organisms of that kind, and one line per organism: its `power_line` (`settings_of`: task ->
    verdict.Settings; the defaults where absent)."""
    lines = []
    if not len(front):
        return lines
    kind = {t: (kinds or {}).get(t) or verdict.UNSPECIFIED for t in set(front["task"])}
    for (model, judge), part in front.groupby(["model", "judge"], sort=False):
        tasks = sorted(dict.fromkeys(part["task"]), key=lambda t: (kind[t], t))
        if len(tasks) < 2:
            continue
        by_task = {}
        for t in tasks:
            rows = part[part["task"] == t]
            by_task[t] = dict(zip(rows["method"], zip(rows["headline"], shared_ranks(list(rows["headline"])))))
        methods = list(dict.fromkeys(m for t in tasks for m in by_task[t]))
        lines += [f"### Across tasks: {model} (judge: {judge})", "",
                  "| method | " + " | ".join(f"{t} ({kind[t]}): headline (rank)" for t in tasks) + " |",
                  "|" + "---|" * (len(tasks) + 1)]
        for m in methods:
            cells = ["{:.3f} ({})".format(*by_task[t][m]) if m in by_task[t] else "– (not run)" for t in tasks]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        moved = [m for m in methods if len({by_task[t][m][1] for t in tasks if m in by_task[t]}) > 1]
        lines += ["", "Rank changes between tasks: " + (", ".join(moved) if moved else "none") + " (headline: each "
                  "task's verdict, on its test part; rank by the point estimate among the methods run on that task, "
                  "whether a pair differs is in each task's section).", "",
                  "Per kind of trait (`task.kind`, docs/organisms.md), each method's headline (rank) on every organism "
                  "of that kind, methods by their mean rank there:", ""]
        for k in dict.fromkeys(kind[t] for t in tasks):
            of_kind = [t for t in tasks if kind[t] == k]
            ran = [m for m in methods if any(m in by_task[t] for t in of_kind)]
            mean_rank = {m: np.mean([by_task[t][m][1] for t in of_kind if m in by_task[t]]) for m in ran}
            cells = [f"{m} " + " / ".join("{:.3f} ({})".format(*by_task[t][m]) if m in by_task[t] else "–"
                                          for t in of_kind) for m in sorted(ran, key=lambda m: (mean_rank[m], m))]
            lines.append(f"- **{k}** ({', '.join(of_kind)}): " + "; ".join(cells))
        lines += ["", "Per organism, the power goal (docs/verdict.md, \"Power\"):", ""]
        for t in tasks:
            lines.append(f"- **{t}**: " + power_line(part[part["task"] == t], (settings_of or {}).get(t, verdict.Settings())))
        lines.append("")
    return lines


def shared_ranks(values: list[float]) -> list[int]:
    """1 + the number of lower headlines: equal ones share the best rank."""
    return [1 + sum(other < value - 1e-12 for other in values) for value in values]


def _order(metric_cols: list[str]) -> list[str]:
    first = [c for c in (X, Y) if c in metric_cols]
    return first + [c for c in metric_cols if c not in first]


def markdown(table: pd.DataFrame, front: pd.DataFrame | None = None, pairs: pd.DataFrame | None = None,
             settings: verdict.Settings | None = None, roles: dict | None = None, kinds: dict | None = None) -> str:
    """Per (task, model, judge): the verdict (`front` and `pairs` from verdict.verdict, when given), then one table of
    every run group, base and sft first (with the verdict, the tasks side by side per model come first:
    `across_tasks_markdown`); a development task's heading says so; n, unscored (and excluded, where metrics files
    report it) per metric, summed over seeds."""
    metric_cols = _order([c for c in table.columns if c.startswith("eval/")
                          and not c.endswith(("_std", *COUNTS, "_seed_ci_low", "_seed_ci_high"))])
    counts = [s for s in COUNTS if any(f"{c}{s}" in table for c in metric_cols)]
    names = {"_n": "n", "_n_unscored": "unscored", "_n_excluded": "excluded"}
    front = front if front is not None else pd.DataFrame()
    pairs = pairs if pairs is not None else pd.DataFrame()
    settings = settings or verdict.Settings()
    lines = across_tasks_markdown(front, kinds, {t: settings for t in set(front.get("task", []))})
    rank = {"base": 0, "sft": 1}
    for (task, model, judge), part in table.groupby(["task", "model", "judge"], sort=False):
        part = part.sort_values(["variant", "strength"], key=lambda c: c.map(lambda v: (rank.get(v, 2), v))
                                if c.name == "variant" else c, kind="stable")
        development = (roles or {}).get(task) == "development"
        lines += [f"### {task} / {model} (judge: {judge})" + (" — development organism, not in the verdict"
                                                              if development else ""), ""]
        lines += verdict_markdown(front, pairs, settings, task, model, judge)
        columns = [c for c in metric_cols if part[c].notna().any()]  # not another task's metric
        head = ["method", "strength", "seeds", *(c.removeprefix("eval/") for c in columns), *map(names.get, counts)]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, r in part.iterrows():
            cells = [r["variant"], f"{r['strength']:g}", str(r["seeds"])]
            for c in columns:
                std = r.get(f"{c}_std")
                spread = f" ± {std:.3f} [{r[f'{c}_seed_ci_low']:.2f}, {r[f'{c}_seed_ci_high']:.2f}]"
                cells.append(f"{r[c]:.3f}" + (spread if r["seeds"] > 1 and pd.notna(std) else ""))
            for s in counts:
                cells.append("/".join(str(int(r[f"{c}{s}"])) for c in columns if pd.notna(r.get(f"{c}{s}"))))
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"{', '.join(map(names.get, counts))}: rows per metric (in column order), summed over seeds; "
                  "with several seeds: mean ± std [95% t-interval] over seeds.", ""]
        lines += [cost, ""] if (cost := cost_line(part)) else []
    return "\n".join(lines)


def cost_line(part: pd.DataFrame) -> str:
    """What a (task, model, judge)'s runs cost in stage wall time, summed from their stage records (summary_table's
    `seconds/*` sums); '' when no run recorded its time."""
    timed = int(part["timed_runs"].sum()) if "timed_runs" in part else 0
    if not timed:
        return ""
    hours = {s: part[SECONDS + s].sum() / 3600 for s in TIMED if SECONDS + s in part}
    runs = int(part["runs"].sum())
    left = runs - timed
    untimed = (f"; the other {left} {'was' if left == 1 else 'were'} made before stage records kept their time"
               if left else "")
    return (f"Cost: {sum(hours.values()):.2f} h of stage wall time ("
            + ", ".join(f"{stage} {h:.2f} h" for stage, h in hours.items())
            + f") in the {timed} of {runs} runs that recorded it{untimed} (summed over jobs: jobs that ran side "
            "by side overlap in wall time; each run's env.json says its machine and threads).")


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another with higher x and lower y, sorted by x."""
    front = [p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)]
    return sorted(set(front))


MARKERS = "o^vD<>PXhp"  # with tab20's dark then light hues: more methods than the default cycle's 10 colours


def plot(df: pd.DataFrame, out_dir: Path, task_cost: float = verdict.Settings.task_cost) -> list[Path]:
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
        if len(sft):  # the task cost at which the verdict reads the spurious rate, against SFT's mean task score
            ax.axvline(sft[X].mean() - task_cost, ls=":", color="grey", lw=1,
                       label=f"SFT task − {task_cost * 100:g} points")
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
    """One line per verdict the report cannot give, or gives unpaired, saying why: every method's curve starts at naive
    SFT (method=sft), the seed mean of its runs, and is compared with it seed by seed (grasp_bench.verdict)."""
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
        for variant, runs in others.groupby("variant", sort=False):
            absent = set(runs["seed"]) - set(sft["seed"])
            if absent:
                notes.append(f"{where}: {variant}: {_seeds(absent)} without a `sft` run: compared with SFT's mean over "
                             f"other seeds, not paired; add method=sft for {_seeds(absent)}")
    return notes


def next_seeds(front: pd.DataFrame, seeds: int = verdict.Settings.power_seeds) -> list[str]:
    """Stage two of a verdict sweep: per (task, model, judge), one `grasp-bench` command per method whose selected
    operating point (`selected_strengths`, its variant) rests on fewer than `seeds` seeds (`verdict.power.seeds`;
    verdict.seeds_to_add: the seeds of 0..seeds-1 it lacks), naive SFT's reference first; `sweep=tradeoff`
    evaluates every row, as stage one did. Rows without a selected point (a verdict.json made before
    it was recorded) give none."""
    lines = []
    rows = front.to_dict("records") if len(front) else []
    for r in sorted(rows, key=lambda r: (r["task"], r["model"], r["judge"], r["method"] != "sft", r["method"])):
        have, strengths = r.get("selected_seeds"), r.get("selected_strengths")
        if not isinstance(have, list) or not isinstance(strengths, list) or (r["method"] != "sft" and not strengths):
            continue
        missing = verdict.seeds_to_add(have, seeds)
        if not missing:
            continue
        name, *knobs = re.split(r",(?=[\w.]+=)", r["variant"])  # the variant's directory name: name,key=value,...
        command = ["grasp-bench", "sweep=tradeoff", f"task={r['task']}", f"model={r['model']}", f"judge={r['judge']}",
                   f"method={name}", *(f"method.{k}" for k in knobs)]
        if strengths:
            command.append("method.strength=" + ",".join(f"{s:g}" for s in strengths))
        lines.append(" ".join([*command, "seed=" + ",".join(map(str, missing))]))
    return lines


def aggregate(runs_root: str | Path, quiet: bool = False, logger_cfg=None) -> dict:
    """Write results.csv, prompts.csv.gz, verdict.json, results.md and plots/ under runs_root; print the table and
    plot paths, a note per missing verdict and a `next:` line per selected point short of seeds (`next_seeds`);
    mirror them to the tracker that `logger_cfg` (a conf/logger/*.yaml node) names. A folder without metrics files
    is a BadInput (it is not a runs root, or no run got to its metrics stage)."""
    runs_root = Path(runs_root).expanduser()
    df = collect(runs_root)
    if df.empty:
        raise BadInput(f"{runs_root}: no metrics files (<task>/<model>/<method>/strength=<s>/seed=<k>/metrics/"
                       "<judge>.json) under it: name the runs root your runs wrote to (their paths.runs)")
    prompts, roles, kinds, settings, missing = verdict_inputs(runs_root)
    settings = settings or verdict.Settings()
    front, pairs = verdict.verdict(prompts, settings, roles)
    write_text(runs_root / RESULTS, df.to_csv(index=False))
    write_bytes(runs_root / verdict.PROMPTS, verdict.prompts_csv(prompts))
    write_json(runs_root / VERDICT, verdict.to_json(front, pairs, settings, roles, kinds))
    table = summary_table(df)
    md = markdown(table, front, pairs, settings, roles, kinds)
    if missing:  # said, never silent: these runs are in the tables of runs but not in the verdict
        md = (f"Left out of the verdict: {len(missing)} run(s) without generations.jsonl, judgments or task.metrics "
              f"to divide into selection and test parts, e.g. {missing[0]}.\n\n") + md
    write_text(runs_root / "results.md", md)
    plots = plot(df, runs_root / "plots", settings.task_cost)
    notes = missing_verdicts(df)
    following = next_seeds(front, settings.power_seeds)
    if logger_cfg is not None:
        from grasp_bench.tracking import make_logger

        make_logger(logger_cfg).report(runs_root, df, plots, seed_means=table, verdict=front, pairs=pairs)
    if not quiet:
        print(md)
        print(f"results: {runs_root / 'results.csv'}, verdict: {runs_root / 'verdict.json'}")
        for p in plots:
            print(f"trade-off plot: {p}")
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        for line in following:
            print(f"next: {line}")
    return {"rows": len(df), "plots": plots, "verdict": front, "pairs": pairs, "notes": notes, "next": following}


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
