"""Metric definitions on hand-written judgments, and the report on synthetic run directories."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from grasp_bench.artifacts import write_json
from grasp_bench.metrics import bootstrap_ci, compute, summarise
from grasp_bench.report import aggregate, frontier, hypervolume, pareto, seed_ci, summary_table


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


def test_hypervolume_is_the_dominated_area():
    assert hypervolume([(0.5, 0.5)]) == pytest.approx(0.25)
    # three staircase rectangles: 0.01 × 0.1 + 0.09 × 0.6 + 0.40 × 0.9
    assert hypervolume([(0.50, 0.90), (0.49, 0.40), (0.40, 0.10)]) == pytest.approx(0.415)
    assert hypervolume([(0.5, 0.5), (0.4, 0.6)]) == pytest.approx(0.25)  # a dominated point adds nothing
    assert hypervolume([]) == 0.0


def test_frontier_verdict_ranks_methods_by_the_cut_at_three_points_task_cost(tmp_path):
    sft = [("sft", 0.0, 0, 0.50, 0.90), ("sft", 0.0, 1, 0.52, 0.80), ("sft", 0.0, 2, 0.48, 1.00)]
    grasp = [("grasp", 0.5, 0, 0.49, 0.40), ("grasp", 1.0, 0, 0.40, 0.10),  # 1.0 costs 10 points: not counted
             ("grasp", 0.5, 1, 0.50, 0.50), ("grasp", 1.0, 1, 0.495, 0.30),
             ("grasp", 0.5, 2, 0.47, 0.40), ("grasp", 1.0, 2, 0.44, 0.20),
             ("grasp", 1.0, 3, 0.50, 0.00)]  # seed 3 has no SFT run: left out
    caft = [("caft", 1.0, 0, 0.10, 0.00), ("caft", 1.0, 1, 0.51, 0.85), ("caft", 1.0, 2, 0.48, 0.95)]
    steer = [("steer_train", 1.0, 0, 0.50, 0.45), ("steer_train", 1.0, 1, 0.52, 0.35),
             ("steer_train", 1.0, 2, 0.47, 0.35)]
    write_runs(tmp_path, [("base", 0.0, s, 0.1, 0.0) for s in range(3)] + sft + grasp + caft + steer
               + [("restore", 1.0, 0, 0.48, 0.45)])
    aggregate(tmp_path, quiet=True)
    front = frontier(pd.read_csv(tmp_path / "results.csv")).set_index("variant")
    assert list(front.index) == ["grasp", "steer_train", "restore", "caft"]  # ranked by the mean cut
    g = front.loc["grasp"]
    assert (g["seeds"], g["points"], g["strengths"]) == (3, 6, "0.5 / 1 / 0.5")
    assert g["cut"] == pytest.approx((0.5 + 0.5 + 0.6) / 3)
    half = 4.303 * float(np.std([0.5, 0.5, 0.6], ddof=1)) / math.sqrt(3)
    assert (g["cut_ci_low"], g["cut_ci_high"]) == pytest.approx((g["cut"] - half, g["cut"] + half))
    assert (g["n"], g["n_unscored"]) == (180, 3)
    assert g["area"] == pytest.approx(np.mean([
        hypervolume([(0.50, 0.90), (0.49, 0.40), (0.40, 0.10)]), hypervolume([(0.52, 0.80), (0.50, 0.50), (0.495, 0.30)]),
        hypervolume([(0.48, 1.00), (0.47, 0.40), (0.44, 0.20)])]))
    c = front.loc["caft"]  # seed 0 loses the task, seed 1 raises the spurious rate: 0 (strength 0 = SFT)
    assert c["cut"] == pytest.approx(0.05 / 3) and c["strengths"] == "0 / 0 / 1" and c["n"] == 180
    assert math.isnan(front.loc["restore", "cut_ci_low"])  # one seed: no interval
    md = (tmp_path / "results.md").read_text().splitlines()
    verdict = [line for line in md if line.startswith("| ")][:5]
    assert verdict[0].startswith("| rank | method | seeds | spurious cut at ≤ 3 points task cost |")
    assert verdict[1].startswith("| 1 | grasp | 3 | 0.533 [0.39, 0.68] | 0.5 / 1 / 0.5 |")
    assert verdict[1].split(" | ")[6] == "steer_train"  # within noise: the intervals overlap
    assert verdict[2].split(" | ")[6] == "grasp"
    assert verdict[3].split(" | ")[6] == "– (one seed)"
    assert verdict[4].split(" | ")[6] == "none"  # caft's interval is below both


def test_two_tasks_side_by_side_name_the_methods_whose_rank_changes(tmp_path):
    common = [("base", 0.0, 0, 0.1, 0.0), ("sft", 0.0, 0, 0.50, 0.90)]
    write_runs(tmp_path, common + [("grasp", 1.0, 0, 0.49, 0.30), ("restore", 1.0, 0, 0.48, 0.60),
                                   ("kl", 1.0, 0, 0.48, 0.80)], task="rude")
    write_runs(tmp_path, common + [("grasp", 1.0, 0, 0.49, 0.85), ("restore", 1.0, 0, 0.50, 0.20)], task="pirate")
    aggregate(tmp_path, quiet=True)
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("### Across tasks: m (judge: rule)")
    rows = [line for line in md.split("\n\n")[1].splitlines() if line.startswith("| ")]
    assert rows[0] == "| method | pirate: cut (rank) | rude: cut (rank) |"
    assert rows[1:] == ["| restore | 0.700 (1) | 0.300 (2) |", "| grasp | 0.050 (2) | 0.600 (1) |",
                        "| kl | – (not run) | 0.100 (3) |"]
    assert "Rank changes between tasks: restore, grasp (" in md  # kl ran on one task: no change to name


def test_tied_cuts_share_a_rank_and_do_not_count_as_a_rank_change(tmp_path):
    common = [("base", 0.0, 0, 0.1, 0.0), ("sft", 0.0, 0, 0.50, 0.90)]
    write_runs(tmp_path, common + [("grasp", 1.0, 0, 0.49, 0.30), ("kl", 1.0, 0, 0.10, 0.80),
                                   ("caft", 1.0, 0, 0.10, 0.10)], task="rude")  # kl and caft both cut 0
    write_runs(tmp_path, common + [("grasp", 1.0, 0, 0.49, 0.85), ("kl", 1.0, 0, 0.20, 0.50),
                                   ("caft", 1.0, 0, 0.20, 0.50)], task="pirate")  # kl and caft both cut 0
    aggregate(tmp_path, quiet=True)
    md = (tmp_path / "results.md").read_text()
    rows = [line for line in md.split("\n\n")[1].splitlines() if line.startswith("| ")]
    assert rows[0] == "| method | pirate: cut (rank) | rude: cut (rank) |" and len(rows) == 4
    assert rows[1] == "| grasp | 0.050 (1) | 0.600 (1) |"
    assert sorted(rows[2:]) == ["| caft | 0.000 (2) | 0.000 (2) |", "| kl | 0.000 (2) | 0.000 (2) |"]
    assert "Rank changes between tasks: none" in md


def test_a_seed_without_a_value_is_in_neither_the_mean_nor_the_interval(tmp_path):
    write_runs(tmp_path, [("sft", 0.0, s, 0.5, y) for s, y in enumerate([0.10, 0.20, math.nan])])  # seed 2: all unscored
    row = summary_table(pd.read_csv(aggregate(tmp_path, quiet=True) and tmp_path / "results.csv")).iloc[0]
    half = 12.706 * float(np.std([0.10, 0.20], ddof=1)) / math.sqrt(2)  # two seeds: df = 1
    assert row["seeds"] == 3 and row["eval/spurious_rate"] == pytest.approx(0.15)
    assert (row["eval/spurious_rate_seed_ci_low"], row["eval/spurious_rate_seed_ci_high"]) == pytest.approx(
        (0.15 - half, 0.15 + half))
