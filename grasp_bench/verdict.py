"""The verdict: each method's operating point chosen on one part of the evaluation prompts, its figures reported on
the other, and paired comparisons that say which methods differ and which are within noise (docs/verdict.md).

- **Parts.** Every prompt of every evaluation split falls, by a seeded hash of its text, into the *selection* part
  (a share `fraction` of the prompts) or the *test* part; every sample of a prompt, and every copy of the same
  prompt, falls in the same part. No task code takes part: the rule reads the generations' `messages`.
- **Curve.** Per method variant: the points (task score, spurious rate), each the mean over seeds of one strength's
  runs, in strength order, starting at strength 0 = naive SFT (the method contract), joined by straight lines.
  A point between two strengths is the mixture of their two runs (answer with one or the other in that proportion).
- **Headline.** The lowest spurious rate on the curve among its points whose task score is at most `task_cost`
  below SFT's (`at_cost`): continuous in the data where the curve crosses the cost line once, and equal to a grid
  point's rate when the cost line passes through it.
- **Selection, then test.** On the selection part: the headline's position along the curve (the operating point)
  and, for a method run in several variants, the variant with the lowest headline. On the test part: the curve's
  rates at that same position (`at`), the task cost there, and the area the variant's curve dominates
  (`hypervolume`). Only test-part figures are reported.
- **Intervals and pairs.** A paired bootstrap: each resample draws the test part's prompts (per split) and the
  seeds with replacement, the same draw for every method, and recomputes every method's figures on it
  (operating points stay as selected). 95% percentile intervals; a pair of methods differs when the interval of
  the difference of their headlines excludes 0, else it is within noise.
- **Power.** The goal of a sweep (`power`): every method's headline interval has a half-width of at most
  `half_width` and its selected point rests on at least `seeds` seeds; each row says whether it meets it.

Pure functions over DataFrames: `prompt_rows` turns one run's judgments into per-prompt sums, `verdict` turns
those of a runs root into the verdict and the pairs table; `prompts_csv` and `read_prompts` keep the sums as data
(prompts.csv.gz), so a verdict can be recomputed without the runs. grasp_bench/report.py reads the run directories.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from grasp_bench.artifacts import BadInput
from grasp_bench.jobs import one_line
from grasp_bench.metrics import EXCLUDED, X, row_values

SELECTION, TEST = "selection", "test"
REFERENCE = (0.0, 1.0)  # (task_score, spurious_rate): the area's reference point, the worst corner
RUN = ["method", "variant", "strength", "seed"]
GROUP = ["task", "model", "judge"]
ROLES = ("development", "test")  # task.role: defaults were chosen on it, or the verdict ranks on it
DEFAULT_ROLE = "test"  # the role of a task whose config declares none
KINDS = ("content", "persona", "style")  # task.kind: the kind of trait (docs/organisms.md); optional
UNSPECIFIED = "unspecified"  # the kind of a task whose config declares none
PROMPTS = "prompts.csv.gz"  # the per-prompt sums a verdict is computed from, beside results.csv and verdict.json
SUMS = ["total", "scored", "unscored", "excluded"]
TEXT = ["task", "model", "method", "variant", "judge", "metric", "split", "prompt", "part"]  # read back as text


@dataclass(frozen=True)
class Settings:
    """conf/config.yaml's `verdict` block."""
    fraction: float = 0.5  # share of each split's prompts in the selection part
    seed: int = 0  # the hash's salt: another seed, another division
    task_cost: float = 0.03  # the loss of task score against naive SFT at which the headline reads the rate
    rank_on: tuple[str, ...] = ("eval/spurious_rate_far", "eval/spurious_rate")  # the first the task has
    resamples: int = 2000
    power_half_width: float = 0.10  # power goal: the headline interval's half-width at most this...
    power_seeds: int = 5  # ...with the selected point resting on at least this many seeds

    @classmethod
    def from_config(cls, node: Mapping | None, where: str) -> Settings:
        """The settings of a `verdict` config node (None: the defaults); a BadInput naming `where` and the key."""
        node = dict(node or {})
        for key in ("selection", "power"):
            if node.get(key) is not None and not isinstance(node[key], Mapping):
                raise BadInput(f"{where}: verdict.{key}={node[key]!r}: expected a mapping")
        selection, goal = dict(node.get("selection") or {}), dict(node.get("power") or {})
        values = {"fraction": selection.get("fraction", cls.fraction), "seed": selection.get("seed", cls.seed),
                  "task_cost": node.get("task_cost", cls.task_cost),
                  "rank_on": tuple(node.get("rank_on", cls.rank_on)), "resamples": node.get("resamples", cls.resamples),
                  "power_half_width": goal.get("half_width", cls.power_half_width),
                  "power_seeds": goal.get("seeds", cls.power_seeds)}
        checks = {"selection.fraction": (values["fraction"], lambda v: 0 < v < 1, "a number strictly between 0 and 1"),
                  "selection.seed": (values["seed"], lambda v: isinstance(v, int), "an integer"),
                  "task_cost": (values["task_cost"], lambda v: v >= 0, "a number >= 0"),
                  "resamples": (values["resamples"], lambda v: isinstance(v, int) and v >= 100, "an integer >= 100"),
                  "rank_on": (values["rank_on"], lambda v: len(v) > 0 and all(isinstance(m, str) for m in v),
                              "a non-empty list of metric names"),
                  "power.half_width": (values["power_half_width"], lambda v: 0 < v <= 1, "a number in (0, 1]"),
                  "power.seeds": (values["power_seeds"], lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")}
        for key, (value, ok, expected) in checks.items():
            try:
                good = not isinstance(value, bool) and ok(value)
            except TypeError:
                good = False
            if not good:
                raise BadInput(f"{where}: verdict.{key}={value!r}: expected {expected}")
        return cls(**values)


def prompt_text(generation: Mapping) -> str:
    """What identifies a prompt: its chat messages (the row id for a row without them)."""
    messages = generation.get("messages")
    return json.dumps(messages, sort_keys=True, ensure_ascii=False) if messages is not None else str(generation["id"])


def _unit(text: str, salt: str = "") -> float:
    h = hashlib.blake2b(f"{salt}\x00{text}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2 ** 64


def part_of(text: str, settings: Settings) -> str:
    """The part a prompt falls in: selection when its seeded hash, uniform in [0, 1), is below the fraction."""
    return SELECTION if _unit(text, f"verdict-seed-{settings.seed}") < settings.fraction else TEST


def prompt_key(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def prompt_rows(identity: Mapping, metric_specs: Mapping[str, Mapping], generations: Iterable[Mapping],
                judgments: Iterable[Mapping], settings: Settings) -> pd.DataFrame:
    """One run's per-prompt sums for the task score and the spurious-rate metrics the verdict may rank on: per
    (metric, prompt) the sum of the scored rows' values, their number, and the unscored and excluded rows."""
    wanted = {k: v for k, v in metric_specs.items() if k == X or k in settings.rank_on}
    texts = {g["id"]: prompt_text(g) for g in generations}
    sums: dict[tuple[str, str], list] = {}
    for metric, values in row_values(wanted, judgments).items():
        for (row_id, _sample), value in values.items():
            s = sums.setdefault((metric, texts.get(row_id, str(row_id))), [0.0, 0, 0, 0])
            if value is None:
                s[2] += 1
            elif value is EXCLUDED:
                s[3] += 1
            else:
                s[0] += float(value)
                s[1] += 1
    rows = [{**identity, "metric": metric, "split": wanted[metric]["split"], "prompt": prompt_key(text),
             "part": part_of(text, settings), "total": total, "scored": scored, "unscored": unscored,
             "excluded": excluded} for (metric, text), (total, scored, unscored, excluded) in sums.items()]
    return pd.DataFrame(rows)


def check_parts(prompts: pd.DataFrame, settings: Settings) -> None:
    """A BadInput, one line, for a split whose selection or test part is empty."""
    if not len(prompts):
        return
    for (task, split), rows in prompts.groupby(["task", "split"], sort=True):
        counts = rows.drop_duplicates("prompt")["part"].value_counts()
        for part in (SELECTION, TEST):
            if counts.get(part, 0) == 0:
                raise BadInput(f"task {task}, split {split!r}: its {part} part is empty ({len(rows['prompt'].unique())} "
                               f"prompts, verdict.selection.fraction={settings.fraction:g}, seed={settings.seed}); "
                               "the verdict needs prompts in both parts: add prompts or change verdict.selection")


def prompts_csv(prompts: pd.DataFrame) -> bytes:
    """prompts.csv.gz's bytes: the per-prompt sums in one row order (by metric, prompt, then the run's columns:
    a prompt's rows sit together, which gzip packs well), gzip without a timestamp, so the same sums give the same
    bytes."""
    keys = [c for c in prompts.columns if c not in (*SUMS, "split", "part")]
    keys = ["metric", "prompt", *(c for c in keys if c not in ("metric", "prompt"))] if len(prompts) else keys
    text = prompts.sort_values(keys, kind="stable").to_csv(index=False) if len(prompts) else ""
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as f:
        f.write(text.encode())
    return out.getvalue()


def read_prompts(path) -> pd.DataFrame:
    """A prompts.csv.gz as `prompt_rows` made it (its text columns as text: a prompt key may look like a number),
    or a BadInput naming the file."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            text = f.read()
        if not text.strip():
            return pd.DataFrame()
        df = pd.read_csv(io.StringIO(text), dtype={c: str for c in TEXT}, keep_default_na=False,
                         na_values={c: [""] for c in SUMS})
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as e:
        raise BadInput(f"{path}: not a prompts file ({one_line(e)}); take it again from its runs root") from None
    missing = [c for c in (*TEXT, *SUMS, "strength", "seed") if c not in df.columns]
    if missing:
        raise BadInput(f"{path}: no {', '.join(map(repr, missing))} column; take it again from its runs root")
    return df


# --- the curve ---------------------------------------------------------------------------------------------------

def at_cost(xs: Sequence[float], ys: Sequence[float], x_min: float) -> tuple[float, float]:
    """The lowest y on the polyline through (xs[i], ys[i]) among its points with x >= x_min, and its position
    (i + t: the share t of the way from point i to point i + 1; the earliest where several tie); (nan, nan) when
    no point of the polyline reaches x_min or a coordinate is unknown."""
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if not len(xs) or not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        return math.nan, math.nan
    tol = 1e-12
    candidates = [(ys[i], float(i)) for i in range(len(xs)) if xs[i] >= x_min - tol]
    for i in range(len(xs) - 1):  # where a segment crosses the cost line
        a, b = xs[i] - x_min, xs[i + 1] - x_min
        if (a > tol and b < -tol) or (a < -tol and b > tol):
            t = a / (a - b)
            candidates.append((ys[i] + t * (ys[i + 1] - ys[i]), i + t))
    if not candidates:
        return math.nan, math.nan
    y, pos = min(candidates, key=lambda c: (round(c[0], 12), c[1]))
    return float(y), float(pos)


def at(values: np.ndarray, pos: float) -> np.ndarray:
    """Values along the curve at position `pos` (last axis = the curve's points), linearly between points."""
    values = np.asarray(values, dtype=float)
    i = int(math.floor(pos))
    t = pos - i
    if t < 1e-12:
        return values[..., i]
    return values[..., i] + t * (values[..., i + 1] - values[..., i])


def hypervolume(points: Iterable[tuple[float, float]], reference: tuple[float, float] = REFERENCE) -> float:
    """Area of the (task_score, spurious_rate) region dominated by `points` (higher task, lower spurious) and
    bounded by `reference`: the union of the rectangles [ref_x, x] × [y, ref_y]."""
    rx, ry = reference
    pts = sorted(((x, y) for x, y in points if x > rx and y < ry), reverse=True)  # task descending
    area, best = 0.0, ry
    for i, (x, y) in enumerate(pts):
        best = min(best, y)
        area += (x - (pts[i + 1][0] if i + 1 < len(pts) else rx)) * (ry - best)
    return area


def operating_point(strengths: Sequence[float], pos: float) -> str:
    """`pos` as a strength: a grid strength, or the mixture of two neighbours with the share of the second."""
    i = int(math.floor(pos))
    t = pos - i
    if t < 1e-9 or i + 1 >= len(strengths):
        return f"{strengths[i]:g}"
    a, b = strengths[i], strengths[i + 1]
    return f"{a + t * (b - a):.3g} ({1 - t:.2f}×{a:g} + {t:.2f}×{b:g})"


def interval(samples: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of bootstrap samples (nan when fewer than half are defined)."""
    samples = np.asarray(samples, dtype=float)
    ok = samples[np.isfinite(samples)]
    if len(ok) < max(1, len(samples) // 2):
        return math.nan, math.nan
    return float(np.quantile(ok, 0.025)), float(np.quantile(ok, 0.975))


# --- the verdict -------------------------------------------------------------------------------------------------

class _Group:
    """One (task, model, judge): per (metric, part) the runs × prompts tables of sums, and the bootstrap weights."""

    def __init__(self, rows: pd.DataFrame, settings: Settings):
        self.rows, self.settings = rows, settings
        self.runs = pd.MultiIndex.from_frame(rows[RUN].drop_duplicates().sort_values(RUN))
        self.seeds = sorted(rows["seed"].unique())
        self.tables: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def table(self, metric: str, part: str) -> dict[str, np.ndarray]:
        if (metric, part) not in self.tables:
            r = self.rows[(self.rows["metric"] == metric) & (self.rows["part"] == part)]
            split = self.rows[(self.rows["split"] == r["split"].iloc[0]) & (self.rows["part"] == part)] if len(r) else r
            prompts = sorted(split["prompt"].unique())  # every metric of one split on the same columns
            t = {}
            for col in ("total", "scored", "unscored", "excluded"):
                wide = r.pivot_table(index=RUN, columns="prompt", values=col, aggfunc="sum", fill_value=0)
                t[col] = wide.reindex(index=self.runs, columns=prompts, fill_value=0).to_numpy(dtype=float)
            t["prompts"] = len(prompts)
            self.tables[metric, part] = t
        return self.tables[metric, part]

    def run_values(self, metric: str, part: str, weights: np.ndarray | None = None) -> np.ndarray:
        """Per run, the metric's mean on the part: (resamples, runs) under prompt `weights` (resamples, prompts),
        (1, runs) without."""
        t = self.table(metric, part)
        w = np.ones((1, t["total"].shape[1])) if weights is None else weights
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w @ t["total"].T) / (w @ t["scored"].T)

    def run_index(self, method: str, variant: str, strength: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the runs of one curve point, and of their seeds in `self.seeds`."""
        idx = [i for i, (m, v, s, _) in enumerate(self.runs) if m == method and v == variant and s == strength]
        return np.array(idx, dtype=int), np.array([self.seeds.index(self.runs[i][3]) for i in idx], dtype=int)


def _seed_means(values: np.ndarray, points: list[tuple[np.ndarray, np.ndarray]], seed_w: np.ndarray) -> np.ndarray:
    """(resamples, curve points): per point the seed-weighted mean of its runs' values (a point whose seeds all
    drew weight 0 keeps its plain mean over seeds)."""
    out = np.empty((values.shape[0], len(points)))
    for k, (runs, seeds) in enumerate(points):
        v, w = values[:, runs], seed_w[:, seeds]
        ok = np.isfinite(v)
        num, den = np.where(ok, v * w, 0).sum(axis=1), np.where(ok, w, 0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            plain = np.where(ok, v, 0).sum(axis=1) / ok.sum(axis=1)
            out[:, k] = np.where(den > 0, num / np.where(den > 0, den, 1), plain)
    return out


def _curves(g: _Group) -> dict[tuple[str, str], tuple[list[float], list]]:
    """(method, variant) -> (strengths, curve points as run positions): SFT's runs first, at strength 0."""
    sft = g.run_index("sft", "sft", 0.0) if ("sft", "sft") in {(m, v) for m, v, _, _ in g.runs} else None
    if sft is None:
        sft_variants = {v for m, v, _, _ in g.runs if m == "sft"}
        sft = g.run_index("sft", sorted(sft_variants)[0], 0.0) if sft_variants else None
    if sft is None or not len(sft[0]):
        return {}
    curves = {("sft", "sft"): ([0.0], [sft])}
    for (method, variant) in dict.fromkeys((m, v) for m, v, _, _ in g.runs):
        if method in ("base", "sft"):
            continue
        strengths = sorted({s for m, v, s, _ in g.runs if (m, v) == (method, variant) and s > 0})
        if strengths:
            curves[method, variant] = ([0.0, *strengths], [sft, *(g.run_index(method, variant, s) for s in strengths)])
    return curves


def _points_at(pos: float, points: int) -> list[int]:
    """The indices of the one or two curve points a position rests on."""
    i = int(math.floor(pos))
    return [i] + ([i + 1] if pos - i > 1e-12 and i + 1 < points else [])


def _rows_behind(g: _Group, metric: str, part: str, points: list, pos: float) -> tuple[int, int]:
    """Rows (all, unscored) of the part behind a curve position: the runs of the one or two points it rests on."""
    t = g.table(metric, part)
    runs = np.concatenate([points[k][0] for k in _points_at(pos, len(points))])
    n = int((t["scored"][runs] + t["unscored"][runs] + t["excluded"][runs]).sum())
    return n, int(t["unscored"][runs].sum())


def group_verdict(rows: pd.DataFrame, settings: Settings) -> tuple[list[dict], list[dict]]:
    """The verdict rows (one per method, SFT as the reference) and the pair rows of one (task, model, judge)."""
    present = set(rows["metric"])
    shown = [m for m in settings.rank_on if m in present]
    if X not in present or not shown:
        return [], []
    rank = shown[0]
    g = _Group(rows, settings)
    curves = _curves(g)
    if not curves:
        return [], []
    # selection: the operating point on each variant's curve, then each method's variant
    chosen: dict[str, tuple] = {}
    ones = np.ones((1, len(g.seeds)))
    x_sel, y_sel = g.run_values(X, SELECTION), g.run_values(rank, SELECTION)
    for (method, variant), (_, points) in curves.items():
        xs, ys = _seed_means(x_sel, points, ones)[0], _seed_means(y_sel, points, ones)[0]
        h, pos = at_cost(xs, ys, xs[0] - settings.task_cost)
        if math.isnan(h):
            continue
        best = chosen.get(method)
        # lower headline wins; on a tie the variant named as the method (its defaults), then by name
        if best is None or (round(h, 12), variant != method, variant) < (round(best[0], 12), best[1] != method, best[1]):
            chosen[method] = (h, variant, pos)
    # test: the paired bootstrap (draw 0 = the test part itself)
    rng = np.random.default_rng(settings.seed)
    split = {m: rows.loc[rows["metric"] == m, "split"].iloc[0] for m in (X, *shown)}
    weights = {}  # one draw per split: two metrics of one split see the same prompts
    for metric in (X, *shown):
        p = g.table(metric, TEST)["total"].shape[1]
        if split[metric] not in weights:
            weights[split[metric]] = np.vstack([np.ones((1, p)), rng.multinomial(p, np.full(p, 1 / p),
                                                                                   size=settings.resamples)])
    seed_w = np.vstack([ones, rng.multinomial(len(g.seeds), np.full(len(g.seeds), 1 / len(g.seeds)),
                                              size=settings.resamples)])
    values = {m: g.run_values(m, TEST, weights[split[m]]) for m in (X, *shown)}
    out, draws = [], {}
    group = dict(zip(GROUP, rows.iloc[0][GROUP]))
    for method, (h_sel, variant, pos) in sorted(chosen.items(), key=lambda kv: kv[0] != "sft"):
        strengths, points = curves[method, variant]
        xs = _seed_means(values[X], points, seed_w)
        ys = {m: _seed_means(values[m], points, seed_w) for m in shown}
        head = at(ys[rank], pos)
        cost = xs[:, 0] - at(xs, pos)
        area = np.array([hypervolume(zip(xb, yb)) for xb, yb in zip(xs, ys[rank])])
        draws[method] = head[1:]
        used = _points_at(pos, len(points))
        at_grid = [k for k in used if strengths[k] > 0] or used  # SFT's point is its own run
        n, unscored = _rows_behind(g, rank, TEST, points, pos)
        n_task, unscored_task = _rows_behind(g, X, TEST, points, pos)
        row = {**group, "method": method, "variant": variant, "ranks_on": rank, "split": split[rank],
               "headline": float(head[0]), "low": interval(head[1:])[0], "high": interval(head[1:])[1],
               "task_cost": float(cost[0]), "task_cost_low": interval(cost[1:])[0],
               "task_cost_high": interval(cost[1:])[1], "area": float(area[0]), "area_low": interval(area[1:])[0],
               "area_high": interval(area[1:])[1], "operating_point": operating_point(strengths, pos),
               "position": pos, "selection_headline": h_sel,
               "selected_strengths": [float(strengths[k]) for k in used if strengths[k] > 0],
               "selected_seeds": sorted(set.intersection(*({int(g.runs[i][3]) for i in points[k][0]} for k in at_grid))),
               "selected_on": f"selection part: {g.table(rank, SELECTION)['prompts']} prompts of {split[rank]!r}, "
                              f"{g.table(X, SELECTION)['prompts']} of {split[X]!r}",
               "test_prompts": g.table(rank, TEST)["prompts"], "seeds": len({g.runs[i][3] for p in points for i in p[0]}),
               "n": n, "n_unscored": unscored, "n_task": n_task, "n_task_unscored": unscored_task}
        row |= power(row, settings)
        for m in shown[1:]:  # the other spurious-rate splits, at the same operating point
            also = at(ys[m], pos)
            row |= {f"{m}": float(also[0]), f"{m}_low": interval(also[1:])[0], f"{m}_high": interval(also[1:])[1]}
        out.append(row)
    out.sort(key=lambda r: (math.isnan(r["headline"]), r["headline"]))
    pairs = []
    for i, a in enumerate(out):
        for b in out[i + 1:]:
            low, high = paired_interval(draws[a["method"]], draws[b["method"]])
            pairs.append({**group, "a": a["method"], "b": b["method"], "difference": a["headline"] - b["headline"],
                          "low": low, "high": high, "differ": differ(low, high)})
    return out, pairs


def seeds_to_add(selected_seeds: Sequence[int], seeds: int) -> list[int]:
    """The seeds a selected point lacks for the power goal: none when it rests on at least `seeds` seeds, else
    those of 0..seeds-1 it has no run of."""
    return [] if len(selected_seeds) >= seeds else [k for k in range(seeds) if k not in selected_seeds]


def power(row: Mapping, settings: Settings) -> dict:
    """A verdict row's power: `half_width`, half its headline interval's width (nan when undefined), and
    `meets_power`, whether that is at most the goal's and the selected point rests on at least its seeds
    (`selected_seeds`; a row without them, from a verdict.json made before they were recorded, does not)."""
    low, high = row.get("low"), row.get("high")
    defined = all(isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high))
    half = (high - low) / 2 if defined else math.nan
    seeds = row.get("selected_seeds")
    enough = isinstance(seeds, list) and not seeds_to_add(seeds, settings.power_seeds)
    return {"half_width": float(half), "meets_power": bool(defined and half <= settings.power_half_width + 1e-12
                                                             and enough)}


def paired_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """95% interval of a − b over the same bootstrap draws."""
    return interval(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))


def differ(low: float, high: float) -> bool:
    """A pair differs when its interval excludes 0 (an undefined interval: not shown to differ)."""
    return bool(low > 0 or high < 0)


def verdict(prompts: pd.DataFrame, settings: Settings, roles: Mapping[str, str] | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The verdict and the pairs of every (task, model, judge) of a test-role task (`roles`: task -> role, default
    test; development tasks are left out); a BadInput for a split of a verdicted task with an empty part."""
    methods, pairs = [], []
    if len(prompts):
        for _, rows in prompts.groupby(GROUP, sort=True):
            if (roles or {}).get(rows["task"].iloc[0], DEFAULT_ROLE) == "development":
                continue
            check_parts(rows, settings)
            m, p = group_verdict(rows, settings)
            methods += m
            pairs += p
    return pd.DataFrame(methods), pd.DataFrame(pairs)


def within_noise(pairs: pd.DataFrame, method: str, task: str, model: str, judge: str) -> list[str]:
    """The methods whose headline does not differ from `method`'s on that task."""
    if not len(pairs):
        return []
    p = pairs[(pairs["task"] == task) & (pairs["model"] == model) & (pairs["judge"] == judge) & ~pairs["differ"]]
    return [b if a == method else a for a, b in zip(p["a"], p["b"]) if method in (a, b)]


def to_json(methods: pd.DataFrame, pairs: pd.DataFrame, settings: Settings, roles: Mapping[str, str] | None = None,
            kinds: Mapping[str, str] | None = None) -> dict:
    """verdict.json: the settings, each task's role and kind of trait, one entry per (task, model, judge, method),
    one per pair."""
    def records(df):
        return [{k: (None if isinstance(v, float) and math.isnan(v) else v.item() if hasattr(v, "item") else v)
                 for k, v in r.items()} for r in df.to_dict("records")] if len(df) else []
    return {"settings": {"selection": {"fraction": settings.fraction, "seed": settings.seed},
                         "task_cost": settings.task_cost, "rank_on": list(settings.rank_on),
                         "resamples": settings.resamples,
                         "power": {"half_width": settings.power_half_width, "seeds": settings.power_seeds},
                         "reported_on": TEST, "selected_on": SELECTION},
            "roles": dict(sorted((roles or {}).items())), "kinds": dict(sorted((kinds or {}).items())),
            "verdict": records(methods), "pairs": records(pairs)}


def from_json(data: Mapping) -> tuple[pd.DataFrame, pd.DataFrame, Settings]:
    """The tables and settings of a verdict.json (as `to_json` wrote it); one written before the power goal was
    recorded reads with the default goal, its rows' power (`power`) computed from their intervals."""
    s = data["settings"]
    goal = s.get("power") or {}
    settings = Settings(fraction=s["selection"]["fraction"], seed=s["selection"]["seed"], task_cost=s["task_cost"],
                        rank_on=tuple(s["rank_on"]), resamples=s["resamples"],
                        power_half_width=goal.get("half_width", Settings.power_half_width),
                        power_seeds=goal.get("seeds", Settings.power_seeds))
    rows = [r if "meets_power" in r else {**r, **power(r, settings)} for r in data["verdict"]]
    return pd.DataFrame(rows), pd.DataFrame(data["pairs"]), settings
