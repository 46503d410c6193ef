"""Metric definitions on hand-written judgments, and the report on synthetic run directories."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from grasp_bench.artifacts import load_json, write_json
from grasp_bench.metrics import bootstrap_ci, compute, summarise
from grasp_bench.report import aggregate, pareto, seed_ci, summary_table


def j(split, i, scorer, score):
    return {"id": f"{split}/{i}", "split": split, "sample": 0, "scorer": scorer, "score": score}


def test_summarise_counts_unscored_rows_and_excludes_them_from_the_mean():
    s = summarise("eval/x", [1.0, 0.0, None, 1.0, None])
    assert s["eval/x"] == pytest.approx(2 / 3)
    assert s["eval/x_n"] == 5 and s["eval/x_n_unscored"] == 2
    assert s["eval/x_ci_low"] <= s["eval/x"] <= s["eval/x_ci_high"]


def test_all_unscored_is_nan_not_zero():
    s = summarise("eval/x", [None, None])
    assert math.isnan(s["eval/x"]) and s["eval/x_n"] == 2 and s["eval/x_n_unscored"] == 2


def test_bootstrap_ci_of_a_constant_is_the_constant_and_widens_with_spread():

    assert bootstrap_ci(np.ones(20)) == (1.0, 1.0)
    low, high = bootstrap_ci(np.array([0.0, 1.0] * 10))
    assert 0.2 < low < 0.5 < high < 0.8


def test_compute_by_scorer_and_by_row_function():
    judgments = [j("a", 0, "correct", 1.0), j("a", 1, "correct", 0.0), j("b", 0, "x", 10.0), j("b", 0, "y", 90.0),
                 j("b", 1, "x", 50.0), j("b", 1, "y", None)]
    specs = {"eval/acc": {"split": "a", "scorer": "correct"},
             "eval/both_low": {"split": "b", "fn": "tests.test_report_metrics.x_low_and_y_high"}}
    m = compute(specs, judgments)
    assert m["eval/acc"] == 0.5 and m["eval/acc_n"] == 2
    assert m["eval/both_low"] == 1.0 and m["eval/both_low_n"] == 2 and m["eval/both_low_n_unscored"] == 1


def x_low_and_y_high(scores):
    if scores.get("x") is None or scores.get("y") is None:
        return None
    return float(scores["x"] < 30 and scores["y"] > 50)


def test_seed_interval_is_a_t_interval_and_undefined_for_one_seed():
    low, high = seed_ci(0.4, 0.2, 3)
    assert (low + high) / 2 == pytest.approx(0.4) and high - low == pytest.approx(2 * 4.303 * 0.2 / math.sqrt(3))
    assert all(math.isnan(v) for v in seed_ci(0.4, float("nan"), 1))


def test_pareto_frontier():
    pts = [(0.1, 0.9), (0.5, 0.5), (0.4, 0.6), (0.6, 0.7), (0.3, 0.2)]
    assert pareto(pts) == [(0.3, 0.2), (0.5, 0.5), (0.6, 0.7)]


def write_runs(root, rows, task="toy"):
    for method, strength, seed, x, y in rows:
        d = root / task / "m" / method / f"strength={strength:g}" / f"seed={seed}"
        write_json(d / "metrics" / "rule.json", {
            "task": task, "model": "m", "method": method, "variant": method, "strength": strength, "seed": seed,
            "judge": "rule", "eval/task_score": x, "eval/task_score_n": 100, "eval/task_score_n_unscored": 0,
            "eval/spurious_rate": y, "eval/spurious_rate_n": 60, "eval/spurious_rate_n_unscored": 1})


def test_report_writes_csv_markdown_and_a_png(tmp_path):
    rows = [("base", 0.0, 0, 0.15, 0.0), ("sft", 0.0, 0, 0.62, 0.97), ("grasp", 0.5, 0, 0.6, 0.5),
            ("grasp", 1.0, 0, 0.58, 0.1), ("grasp", 1.0, 1, 0.56, 0.2)]
    write_runs(tmp_path, rows)
    out = aggregate(tmp_path, quiet=True)
    df = pd.read_csv(tmp_path / "results.csv")
    assert out["rows"] == len(df) == 5
    assert list(df.columns[:7]) == ["task", "model", "method", "variant", "strength", "seed", "judge"]
    md = (tmp_path / "results.md").read_text().splitlines()
    head = "| method | strength | seeds | task_score | spurious_rate | n | unscored |"
    table = [line for line in md[md.index(head):] if line.startswith("| ")]  # after the verdict
    assert [line.split(" | ")[0] for line in table[1:]] == ["| base", "| sft", "| grasp", "| grasp"]
    # two seeds: t_{0.975,1} = 12.706, half-width = 12.706 * std / sqrt(2)
    assert table[-1] == "| grasp | 1 | 2 | 0.570 ± 0.014 [0.44, 0.70] | 0.150 ± 0.071 [-0.49, 0.79] | 200/120 | 0/2 |"
    png = tmp_path / "plots" / "tradeoff_toy_m_rule.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_report_sums_the_stage_times_that_runs_recorded(tmp_path):
    write_runs(tmp_path, [("sft", 0.0, 0, 0.62, 0.97), ("grasp", 1.0, 0, 0.58, 0.1), ("grasp", 1.0, 1, 0.56, 0.2)])
    aggregate(tmp_path, quiet=True)
    assert "Cost:" not in (tmp_path / "results.md").read_text()  # no run recorded a time: no line
    for seed, train in ((0, 1800.0), (1, 3600.0)):  # two grasp runs recorded theirs (no judge stage), sft did not
        stages = tmp_path / "toy" / "m" / "grasp" / "strength=1" / f"seed={seed}" / "stages"
        write_json(stages / "train.json", {"config": {}, "seconds": train})
        write_json(stages / "generate.json", {"config": {}, "seconds": 900.0})
    aggregate(tmp_path, quiet=True)
    cost = [line for line in (tmp_path / "results.md").read_text().splitlines() if line.startswith("Cost:")]
    assert cost == ["Cost: 2.00 h of stage wall time (train 1.50 h, generate 0.50 h, judge 0.00 h) in the 2 of 3 "
                    "runs that recorded it; the other 1 was made before stage records kept their time (summed over "
                    "jobs: jobs that ran side by side overlap in wall time; each run's env.json says its machine and "
                    "threads)."]
    assert pd.read_csv(tmp_path / "results.csv")["seconds/train"].sum() == 5400  # the per-run figures, as data


def test_report_shows_excluded_rows_and_keeps_intervals_out_of_the_value_columns(tmp_path):
    judgments = [j("em", i, "aligned", a) for i, a in enumerate([10, 90, None, 20])] + [
        j("em", i, "coherent", c) for i, c in enumerate([80, 90, 70, 30])]
    specs = {"eval/spurious_rate": {"split": "em", "fn": "grasp_bench.tasks.em_eval.metrics.em_fraction"},
             "eval/em_among_coherent_pct": {"split": "em", "fn": "grasp_bench.tasks.em_eval.metrics.em_among_coherent_pct"}}
    for seed in (0, 1):
        d = tmp_path / "t" / "m" / "sft" / "strength=0" / f"seed={seed}"
        write_json(d / "metrics" / "llm.json", {"task": "t", "model": "m", "method": "sft", "variant": "sft",
                                                "strength": 0.0, "seed": seed, "judge": "llm",
                                                **compute(specs, judgments)})
    aggregate(tmp_path, quiet=True)
    table = [line for line in (tmp_path / "results.md").read_text().splitlines() if line.startswith("| ")]
    assert table[0] == "| method | strength | seeds | spurious_rate | em_among_coherent_pct | n | unscored | excluded |"
    assert table[1].endswith("| 8/8 | 2/2 | 0/2 |")  # row 3 (coherent 30) is left out of em_among_coherent only


def test_two_tasks_side_by_side_name_the_methods_whose_rank_changes(tmp_path):
    from tests.test_verdict import draws, write_run

    rng = np.random.default_rng(0)
    spurious = {"rude": {"grasp": 0.3, "restore": 0.6, "kl": 0.8}, "pirate": {"grasp": 0.85, "restore": 0.2}}
    for task, methods in spurious.items():
        write_run(tmp_path, task, "sft", 0, 0, draws(0.5, 200, rng), draws(0.9, 200, rng))
        for method, rate in methods.items():
            write_run(tmp_path, task, method, 1.0, 0, draws(0.5, 200, rng), draws(rate, 200, rng))
    aggregate(tmp_path, quiet=True)
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("### Across tasks: m (judge: rule)")
    rows = [line for line in md.split("\n\n")[1].splitlines() if line.startswith("| ")]
    assert rows[0] == "| method | pirate (unspecified): headline (rank) | rude (unspecified): headline (rank) |"
    ranks = {r.split(" | ")[0][2:]: [c.rsplit("(", 1)[1][0] for c in r.split(" | ")[1:]] for r in rows[1:]}
    assert ranks == {"restore": ["1", "2"], "grasp": ["2", "1"], "sft": ["3", "4"], "kl": ["n", "3"]}  # n: not run
    moved = md.split("Rank changes between tasks: ")[1].split(" (")[0].split(", ")
    assert set(moved) == {"grasp", "restore", "sft"}  # kl ran on one task: no change to name


def test_each_task_table_has_its_own_metrics_only(tmp_path):
    write_runs(tmp_path, [("sft", 0.0, 0, 0.5, 0.9)], task="plain")
    write_runs(tmp_path, [("sft", 0.0, 0, 0.6, 0.8)], task="richer")
    path = tmp_path / "richer" / "m" / "sft" / "strength=0" / "seed=0" / "metrics" / "rule.json"
    write_json(path, {**load_json(path), "eval/far_rate": 0.4, "eval/far_rate_n": 50, "eval/far_rate_n_unscored": 0})
    aggregate(tmp_path, quiet=True)
    heads = [line for line in (tmp_path / "results.md").read_text().splitlines() if line.startswith("| method | strength")]
    assert heads == ["| method | strength | seeds | task_score | spurious_rate | n | unscored |",
                     "| method | strength | seeds | task_score | spurious_rate | far_rate | n | unscored |"]


def test_runs_without_judgments_are_tabled_but_not_verdicted(tmp_path):
    write_runs(tmp_path, [("sft", 0.0, 0, 0.5, 0.9), ("grasp", 1.0, 0, 0.49, 0.3)])
    out = aggregate(tmp_path, quiet=True)
    assert out["verdict"].empty and out["rows"] == 2
    assert (tmp_path / "results.md").read_text().startswith("Left out of the verdict: 2 run(s) without")


def test_a_seed_without_a_value_is_in_neither_the_mean_nor_the_interval(tmp_path):
    write_runs(tmp_path, [("sft", 0.0, s, 0.5, y) for s, y in enumerate([0.10, 0.20, math.nan])])  # seed 2: all unscored
    row = summary_table(pd.read_csv(aggregate(tmp_path, quiet=True) and tmp_path / "results.csv")).iloc[0]
    half = 12.706 * float(np.std([0.10, 0.20], ddof=1)) / math.sqrt(2)  # two seeds: df = 1
    assert row["seeds"] == 3 and row["eval/spurious_rate"] == pytest.approx(0.15)
    assert (row["eval/spurious_rate_seed_ci_low"], row["eval/spurious_rate_seed_ci_high"]) == pytest.approx(
        (0.15 - half, 0.15 + half))
