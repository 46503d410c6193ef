"""The verdict (grasp_bench/verdict.py) on synthetic runs roots whose run directories hold what the pipeline writes
(config.yaml, generations.jsonl, judgments/rule.jsonl, metrics/rule.json), and its pure functions' properties."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grasp_bench.artifacts import BadInput, read_jsonl, write_json, write_jsonl, write_text
from grasp_bench.metrics import compute
from grasp_bench.report import aggregate, main, next_seeds, verdict_inputs
from grasp_bench.verdict import (
    PROMPTS,
    SELECTION,
    TEST,
    Settings,
    at,
    at_cost,
    differ,
    from_json,
    hypervolume,
    paired_interval,
    part_of,
    power,
    prompt_rows,
    prompts_csv,
    read_prompts,
    to_json,
    verdict,
)

METRICS = {"eval/task_score": {"split": "in_domain", "scorer": "correct"},
           "eval/spurious_rate": {"split": "unrelated", "scorer": "factor"}}


def write_run(root, task, method, strength, seed, task_hits, spurious_hits, variant=None, role=None, metrics=METRICS,
              kind=None, verdict_cfg=None):
    """One run directory as the pipeline leaves it: a reply per prompt, scored 1/0 (None = unscored)."""
    variant = variant or method
    d = root / task / "m" / variant / f"strength={strength:g}" / f"seed={seed}"
    task_cfg = {"name": task, "metrics": metrics, **({"role": role} if role else {}), **({"kind": kind} if kind else {})}
    config = {"task": task_cfg, "seed": seed, **({"verdict": verdict_cfg} if verdict_cfg else {})}
    write_text(d / "config.yaml", json.dumps(config))  # JSON is YAML
    gens, judgments = [], []
    for split, scorer, hits in (("in_domain", "correct", task_hits), ("unrelated", "factor", spurious_hits)):
        for i, hit in enumerate(hits):
            row_id = f"{split}/{i}"
            gens.append({"id": row_id, "split": split, "sample": 0, "completion": "…",
                         "messages": [{"role": "user", "content": f"{split} question {i}"}]})
            judgments.append({"id": row_id, "split": split, "sample": 0, "scorer": scorer, "score": hit})
    write_jsonl(d / "generations.jsonl", gens)
    write_jsonl(d / "judgments" / "rule.jsonl", judgments)
    write_json(d / "metrics" / "rule.json", {"task": task, "model": "m", "method": method, "variant": variant,
                                             "strength": float(strength), "seed": seed, "judge": "rule",
                                             **compute(metrics, judgments)})


def draws(p, n, rng):
    return [float(v) for v in (rng.random(n) < p)]


# (task rate, spurious rate) per method and strength: grasp cuts the trait at a small task cost, noisy does nothing
TRUE = {"base": {0: (0.10, 0.00)}, "sft": {0: (0.60, 0.90)},
        "grasp": {0.5: (0.59, 0.40), 1.0: (0.50, 0.10)},
        "noisy": {0.5: (0.60, 0.88), 1.0: (0.58, 0.90)}}


def synthetic_root(root, seeds=(0, 1, 2), task="toy", n_task=200, n_spur=200, role=None, kind=None, true=None,
                   verdict_cfg=None):
    rng = np.random.default_rng(0)
    for method, curve in (true or TRUE).items():
        for strength, (pt, ps) in curve.items():
            for seed in seeds:
                write_run(root, task, method, strength, seed, draws(pt, n_task, rng), draws(ps, n_spur, rng), role=role,
                          kind=kind, verdict_cfg=verdict_cfg)
    return root


@pytest.fixture
def runs(tmp_path):
    return synthetic_root(tmp_path)


# --- parts -------------------------------------------------------------------------------------------------------

def test_parts_are_seeded_by_prompt_and_near_the_fraction():
    texts = [f"prompt {i}" for i in range(4000)]
    parts = [part_of(t, Settings(fraction=0.3)) for t in texts]
    assert 0.27 < parts.count(SELECTION) / len(texts) < 0.33
    assert parts == [part_of(t, Settings(fraction=0.3)) for t in texts]  # deterministic
    assert parts != [part_of(t, Settings(fraction=0.3, seed=1)) for t in texts]  # another salt, another division


def test_every_sample_of_a_prompt_falls_in_one_part():
    gens = [{"id": f"u/{i}", "split": "u", "sample": s, "messages": [{"role": "user", "content": f"q{i % 7}"}]}
            for i in range(30) for s in range(3)]  # 30 ids over 7 distinct prompts, three samples each
    judgments = [{"id": g["id"], "split": "u", "sample": g["sample"], "scorer": "factor", "score": 1.0} for g in gens]
    rows = prompt_rows({"task": "t"}, {"eval/spurious_rate": {"split": "u", "scorer": "factor"}}, gens, judgments,
                       Settings())
    assert len(rows) == 7 and rows["scored"].sum() == 90  # one row per distinct prompt: copies are one prompt
    assert rows.groupby("prompt")["part"].nunique().max() == 1


def test_an_empty_part_is_one_line_and_exit_2(tmp_path, capsys):
    write_run(tmp_path, "toy", "sft", 0, 0, [1.0] * 20, [1.0])  # one spurious prompt: one part must be empty
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: task toy, split 'unrelated': its") and "part is empty" in err


def test_a_bad_fraction_names_the_config(tmp_path):
    write_run(tmp_path, "toy", "sft", 0, 0, [1.0] * 10, [1.0] * 10)
    config = tmp_path / "toy/m/sft/strength=0/seed=0/config.yaml"
    config.write_text(config.read_text()[:-1] + ', "verdict": {"selection": {"fraction": 1.5}}}')
    with pytest.raises(BadInput, match=r"config.yaml: verdict.selection.fraction=1.5: expected a number strictly"):
        aggregate(tmp_path, quiet=True)


# --- the verdict on a runs root --------------------------------------------------------------------------------

def test_verdict_selects_on_one_part_and_reports_on_the_other(runs):
    out = aggregate(runs, quiet=True)
    front = out["verdict"].set_index("method")
    assert list(front.index[:1]) == ["grasp"] and set(front.index) == {"grasp", "noisy", "sft"}
    g = front.loc["grasp"]
    assert g["ranks_on"] == "eval/spurious_rate" and g["split"] == "unrelated"
    assert g["low"] <= g["headline"] <= g["high"] and g["high"] - g["low"] < 0.2
    assert g["selected_on"].startswith("selection part: ") and g["seeds"] == 3
    # the figures are the test part's alone: recomputed by hand from the judgments of the test prompts
    def rows(method, strength, seed):
        run = runs / f"toy/m/{method}/strength={strength:g}/seed={seed}"
        return prompt_rows({"method": method, "strength": strength, "seed": seed}, METRICS,
                           read_jsonl(run / "generations.jsonl"), read_jsonl(run / "judgments/rule.jsonl"), Settings())

    prompts = pd.concat([rows(m, s, k) for m, s in (("sft", 0), ("grasp", 0.5), ("grasp", 1.0)) for k in range(3)])
    test = prompts[(prompts["part"] == TEST) & (prompts["metric"] == "eval/spurious_rate")]
    rate = test.groupby(["method", "strength", "seed"])[["total", "scored"]].sum()
    curve = (rate["total"] / rate["scored"]).groupby(level=[0, 1]).mean()
    ys = [curve["sft", 0], curve["grasp", 0.5], curve["grasp", 1.0]]
    assert g["headline"] == pytest.approx(at(np.array(ys), g["position"]))
    assert g["n"] == test[test["strength"].isin(_used(g["position"]))]["scored"].sum()
    # noisy never cuts: within noise of sft, and grasp differs from both
    pairs = out["pairs"].set_index(["a", "b"])
    assert pairs.loc[("grasp", "sft"), "differ"] and pairs.loc[("grasp", "noisy"), "differ"]
    noisy_sft = pairs.loc[("noisy", "sft")] if ("noisy", "sft") in pairs.index else pairs.loc[("sft", "noisy")]
    assert not noisy_sft["differ"]


def _used(pos):
    strengths = [0, 0.5, 1.0]
    i = int(math.floor(pos))
    return strengths[i:i + 2] if pos - i > 1e-12 else [strengths[i]]


def test_verdict_json_and_markdown_say_what_was_selected_and_where(runs):
    aggregate(runs, quiet=True)
    data = json.loads((runs / "verdict.json").read_text())
    assert data["settings"]["reported_on"] == "test" and data["settings"]["selection"] == {"fraction": 0.5, "seed": 0}
    entry = next(r for r in data["verdict"] if r["method"] == "grasp")
    assert {"headline", "low", "high", "n", "n_unscored", "operating_point", "selected_on", "ranks_on"} <= set(entry)
    md = (runs / "results.md").read_text()
    assert "operating points chosen on the selection part, every figure on the test part only" in md
    assert "| method | variant | spurious_rate at 3 points task cost (test) |" in md
    assert "Pairs that differ (paired bootstrap" in md and "grasp − " in md


def test_a_rerun_of_the_report_gives_the_same_verdict(runs):
    first = aggregate(runs, quiet=True)["verdict"]
    pd.testing.assert_frame_equal(first, aggregate(runs, quiet=True)["verdict"])


def test_development_tasks_are_left_out_and_marked(tmp_path):
    synthetic_root(tmp_path, seeds=(0,), task="dev", n_task=40, n_spur=40, role="development")
    synthetic_root(tmp_path, seeds=(0,), task="toy", n_task=40, n_spur=40)
    out = aggregate(tmp_path, quiet=True)
    assert set(out["verdict"]["task"]) == {"toy"}
    assert "### dev / m (judge: rule) — development organism, not in the verdict" in (tmp_path / "results.md").read_text()


def test_runs_without_judgments_are_named_not_silently_dropped(tmp_path):
    synthetic_root(tmp_path, seeds=(0,), n_task=40, n_spur=40)
    (tmp_path / "toy/m/grasp/strength=1/seed=0/judgments/rule.jsonl").unlink()
    aggregate(tmp_path, quiet=True)
    assert (tmp_path / "results.md").read_text().startswith("Left out of the verdict: 1 run(s) without")


def test_the_far_split_is_ranked_on_when_the_task_has_it(tmp_path):
    far = {**METRICS, "eval/spurious_rate_far": {"split": "unrelated", "scorer": "factor"}}
    rng = np.random.default_rng(1)
    for method, strength in (("sft", 0), ("grasp", 1.0)):
        write_run(tmp_path, "toy", method, strength, 0, draws(0.6, 60, rng), draws(0.5, 60, rng), metrics=far)
    front = aggregate(tmp_path, quiet=True)["verdict"]
    assert set(front["ranks_on"]) == {"eval/spurious_rate_far"} and "eval/spurious_rate" in front
    assert "spurious_rate there (test)" in (tmp_path / "results.md").read_text()


# --- properties of the pure functions ----------------------------------------------------------------------------

rates = st.floats(0, 1, allow_nan=False)
grid_rates = st.integers(0, 1000).map(lambda k: k / 1000)  # distinct ones are at least 0.001 apart


def monotone_curve(draw_xs, draw_ys):
    """A curve whose task score and spurious rate both fall with strength (the usual shape)."""
    xs = sorted(draw_xs, reverse=True)
    ys = sorted(draw_ys, reverse=True)
    return xs, ys


@given(st.lists(rates, min_size=2, max_size=6), st.lists(rates, min_size=6, max_size=6), st.floats(0, 0.5))
def test_interpolation_is_monotone_in_the_cost(xs, ys, cost):
    xs, ys = monotone_curve(xs, ys[:len(xs)])
    h1, _ = at_cost(xs, ys, xs[0] - cost)
    h2, _ = at_cost(xs, ys, xs[0] - cost - 0.01)
    assert h2 <= h1 + 1e-12  # a larger budget never gives a higher rate
    assert min(ys) - 1e-12 <= h1 <= ys[0] + 1e-12


@given(st.lists(grid_rates, min_size=2, max_size=6, unique=True), st.lists(rates, min_size=6, max_size=6), st.data())
def test_interpolation_equals_the_point_when_the_cost_hits_a_grid_point(xs, ys, data):
    xs, ys = monotone_curve(xs, ys[:len(xs)])
    k = data.draw(st.integers(0, len(xs) - 1))
    h, pos = at_cost(xs, ys, xs[k])
    assert h == pytest.approx(min(ys[:k + 1])) and h == pytest.approx(ys[k])


@settings(max_examples=200)
@given(st.lists(st.floats(0.05, 0.95), min_size=3, max_size=5, unique=True), st.lists(rates, min_size=5, max_size=5),
       st.data())
def test_one_reply_moves_the_headline_by_a_bounded_amount(xs, ys, data):
    """One reply of n changes one point's seed mean by 1/n; the headline moves by at most the move in y plus the
    curve's steepest slope times the move in x."""
    xs, ys = monotone_curve(xs, ys[:len(xs)])
    n = 200
    k = data.draw(st.integers(1, len(xs) - 1))
    axis = data.draw(st.sampled_from(["x", "y"]))
    sign = data.draw(st.sampled_from([-1, 1]))
    xs2, ys2 = list(xs), list(ys)
    (xs2 if axis == "x" else ys2)[k] += sign / n
    x_min = xs[0] - 0.03
    slopes = [abs((b - a) / (d - c)) for a, b, c, d in zip(ys, ys[1:], xs, xs[1:]) if d != c]
    slopes2 = [abs((b - a) / (d - c)) for a, b, c, d in zip(ys2, ys2[1:], xs2, xs2[1:]) if d != c]
    bound = 1 / n + max(slopes + slopes2 + [0]) / n
    assert abs(at_cost(xs, ys, x_min)[0] - at_cost(xs2, ys2, x_min)[0]) <= bound + 1e-9


@given(st.lists(rates, min_size=20, max_size=50))
def test_a_method_against_itself_is_zero_and_within_noise(samples):
    low, high = paired_interval(np.array(samples), np.array(samples))
    assert (low, high) == (0.0, 0.0) and not differ(low, high)


def test_identical_methods_are_within_noise(tmp_path):
    rng = np.random.default_rng(3)
    for strength, seed in ((0, 0), (0, 1)):
        write_run(tmp_path, "toy", "sft", strength, seed, draws(0.6, 80, rng), draws(0.9, 80, rng))
    for seed in (0, 1):
        hits_t, hits_s = draws(0.58, 80, rng), draws(0.3, 80, rng)
        for method in ("twin_a", "twin_b"):  # the same replies under two names
            write_run(tmp_path, "toy", method, 1.0, seed, hits_t, hits_s)
    out = aggregate(tmp_path, quiet=True)
    pair = out["pairs"].set_index(["a", "b"])
    twins = pair.loc[[i for i in pair.index if set(i) == {"twin_a", "twin_b"}]].iloc[0]
    assert (twins["low"], twins["high"], twins["difference"]) == (0.0, 0.0, 0.0) and not twins["differ"]


def test_hypervolume_is_the_dominated_area():
    assert hypervolume([(0.5, 0.5)]) == pytest.approx(0.25)
    assert hypervolume([(0.50, 0.90), (0.49, 0.40), (0.40, 0.10)]) == pytest.approx(0.415)
    assert hypervolume([(0.5, 0.5), (0.4, 0.6)]) == pytest.approx(0.25)  # a dominated point adds nothing
    assert hypervolume([]) == 0.0


def test_verdict_of_no_rows_is_empty():
    front, pairs = verdict(pd.DataFrame(), Settings())
    assert front.empty and pairs.empty


def test_a_damaged_judgments_file_is_one_line_naming_it(tmp_path, capsys):
    synthetic_root(tmp_path, seeds=(0,), n_task=40, n_spur=40)
    damaged = tmp_path / "toy/m/grasp/strength=1/seed=0/judgments/rule.jsonl"
    damaged.write_bytes(damaged.read_bytes() + b'{"id": oops\n')
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and err.startswith(f"error: {damaged}:")


# --- the per-prompt sums as data, the selected point, kinds -----------------------------------------------------

def test_prompts_file_is_the_verdicts_input_and_byte_stable(tmp_path):
    synthetic_root(tmp_path, seeds=(0, 1), n_task=60, n_spur=60)
    out = aggregate(tmp_path, quiet=True)
    first = (tmp_path / PROMPTS).read_bytes()
    aggregate(tmp_path, quiet=True)
    assert (tmp_path / PROMPTS).read_bytes() == first  # no timestamp in the gzip header, one row order
    saved, inputs = read_prompts(tmp_path / PROMPTS), verdict_inputs(tmp_path)[0]
    assert len(saved) == len(inputs) == 2 * 6 * (60 + 60)  # one row per run (2 seeds x 6 points), metric, prompt
    assert prompts_csv(saved) == first and prompts_csv(inputs.sample(frac=1, random_state=0)) == first
    again, _ = verdict(saved, Settings())  # the verdict read back from the file is the report's
    pd.testing.assert_frame_equal(again, out["verdict"])
    assert len(first) < 20 * len(saved)  # a few bytes a row: prompt keys sit together


def test_the_selected_point_and_the_seeds_to_add(tmp_path):
    synthetic_root(tmp_path, seeds=(0, 1), n_task=60, n_spur=60)
    out = aggregate(tmp_path, quiet=True)
    front = out["verdict"].set_index("method")
    assert front.loc["sft", "selected_strengths"] == [] and front.loc["sft", "selected_seeds"] == [0, 1]
    for method in ("grasp", "noisy"):
        pos, chosen = front.loc[method, "position"], front.loc[method, "selected_strengths"]
        assert chosen == [s for s in _used(pos) if s > 0] and 1 <= len(chosen) <= 2
    base = "grasp-bench sweep=tradeoff task=toy model=m judge=rule"
    assert out["next"][0] == f"{base} method=sft seed=2,3,4"
    strengths = ",".join(f"{s:g}" for s in front.loc["grasp", "selected_strengths"])
    assert f"{base} method=grasp method.strength={strengths} seed=2,3,4" in out["next"]
    assert (tmp_path / "verdict.json").read_text().count('"selected_strengths"') == 3
    full = synthetic_root(tmp_path / "five", seeds=(0, 1, 2, 3, 4), n_task=60, n_spur=60)
    assert aggregate(full, quiet=True)["next"] == []  # every selected point rests on seeds 0-4


def test_a_variant_is_asked_for_with_its_knobs():
    front = pd.DataFrame([{"task": "t", "model": "m", "judge": "j", "method": "grasp",
                           "variant": "grasp,granularity=pooled,k=8", "selected_strengths": [0.25, 0.5],
                           "selected_seeds": [0, 2]},
                          {"task": "t", "model": "m", "judge": "j", "method": "kl", "variant": "kl",
                           "selected_strengths": [], "selected_seeds": [0]}])  # at SFT's point: SFT's line covers it
    assert next_seeds(front) == ["grasp-bench sweep=tradeoff task=t model=m judge=j method=grasp "
                                 "method.granularity=pooled method.k=8 method.strength=0.25,0.5 seed=1,3,4"]


def test_next_lines_ask_for_seeds_exactly_where_the_power_goal_lacks_them():
    """One rule (verdict.seeds_to_add): a point on 5 seeds other than 0-4 meets the goal's seeds and gets no line."""
    rows = [{"task": "t", "model": "m", "judge": "j", "method": "sft", "variant": "sft", "selected_strengths": [],
             "selected_seeds": [0, 1, 2, 3, 7], "low": 0.1, "high": 0.2},
            {"task": "t", "model": "m", "judge": "j", "method": "kl", "variant": "kl", "selected_strengths": [0.5],
             "selected_seeds": [0, 1, 7], "low": 0.1, "high": 0.2}]
    assert [power(r, Settings())["meets_power"] for r in rows] == [True, False]
    assert next_seeds(pd.DataFrame(rows)) == ["grasp-bench sweep=tradeoff task=t model=m judge=j method=kl "
                                              "method.strength=0.5 seed=2,3,4"]


def test_kinds_are_read_like_roles_and_group_the_organisms(tmp_path):
    for task, kind in (("a", "style"), ("b", "content"), ("c", "style"), ("d", None)):
        synthetic_root(tmp_path, seeds=(0,), task=task, n_task=40, n_spur=40, kind=kind)
    out = aggregate(tmp_path, quiet=True)
    data = json.loads((tmp_path / "verdict.json").read_text())
    assert data["kinds"] == {"a": "style", "b": "content", "c": "style", "d": "unspecified"}
    md = (tmp_path / "results.md").read_text()
    assert ("| method | b (content): headline (rank) | a (style): headline (rank) | c (style): headline (rank) | "
            "d (unspecified): headline (rank) |") in md
    front = out["verdict"].set_index(["task", "method"])
    style = next(line for line in md.splitlines() if line.startswith("- **style** (a, c): "))
    cell = f"grasp {front.loc[('a', 'grasp'), 'headline']:.3f} (1) / {front.loc[('c', 'grasp'), 'headline']:.3f} (1)"
    assert style.split(": ", 1)[1].startswith(cell)  # grasp ranks first on both style organisms
    assert "- **content** (b): grasp " in md and "- **unspecified** (d): grasp " in md
    for task in "abcd":  # one seed: no organism meets the power goal, and the side-by-side view says so per organism
        assert (f"- **{task}**: Power: 0 of 3 methods meet the goal (half-width <= 0.10 with >= 5 seeds at the "
                "selected point); short: ") in md


def test_an_unknown_kind_names_the_config(tmp_path):
    write_run(tmp_path, "toy", "sft", 0, 0, [1.0] * 10, [1.0] * 10, kind="tone")
    with pytest.raises(BadInput, match=r"config.yaml: task.kind='tone': expected one of content, persona, style"):
        aggregate(tmp_path, quiet=True)


# --- power: the goal on the headline interval's half-width and the seeds at the selected point ------------------

def test_power_says_which_methods_meet_the_goal_and_names_the_rest(tmp_path):
    """sft and grasp on seeds 0-4 meet it; `erratic` (seeds that disagree: a wide interval on 5 seeds) and `sparse`
    (one seed at its point) do not, and the report names both with their half-width and seeds."""
    root = synthetic_root(tmp_path, seeds=range(5), n_task=200, n_spur=200,
                          true={"sft": TRUE["sft"], "grasp": TRUE["grasp"]})
    rng = np.random.default_rng(7)
    for seed in range(5):
        for strength in (0.5, 1.0):
            rate = 0.05 if seed < 2 else 0.95
            write_run(root, "toy", "erratic", strength, seed, draws(0.60, 200, rng), draws(rate, 200, rng))
    for strength in (0.5, 1.0):
        write_run(root, "toy", "sparse", strength, 0, draws(0.60, 200, rng), draws(0.3, 200, rng))
    out = aggregate(root, quiet=True)
    front = out["verdict"].set_index("method")
    for _, r in front.iterrows():
        assert r["half_width"] == pytest.approx((r["high"] - r["low"]) / 2)
        assert r["meets_power"] == (r["half_width"] <= 0.10 and len(r["selected_seeds"]) >= 5)
    assert {m for m in front.index if front.loc[m, "meets_power"]} == {"sft", "grasp"}
    assert front.loc["erratic", "half_width"] > 0.10 and len(front.loc["erratic", "selected_seeds"]) == 5
    assert front.loc["sparse", "selected_seeds"] == [0]
    md = (root / "results.md").read_text()
    assert "| method | variant | spurious_rate at 3 points task cost (test) | half-width |" in md
    assert f"| grasp | grasp | {front.loc['grasp', 'headline']:.3f} [" in md
    assert f"] | {front.loc['grasp', 'half_width']:.3f} |" in md
    short = {m: f"{m} ({front.loc[m, 'half_width']:.3f}, {n})" for m, n in (("erratic", "5 seeds"), ("sparse", "1 seed"))}
    order = [m for m in front.index if m in short]  # in the verdict's order
    line = next(x for x in md.splitlines() if x.startswith("Power: "))
    assert line.startswith("Power: 2 of 4 methods meet the goal (half-width <= 0.10 with >= 5 seeds at the selected "
                           f"point); short: {', '.join(short[m] for m in order)} (too few seeds: the `next:` lines")
    assert any("method=sparse" in x for x in out["next"]) and not any("method=erratic" in x for x in out["next"])
    data = json.loads((root / "verdict.json").read_text())
    assert data["settings"]["power"] == {"half_width": 0.1, "seeds": 5}
    assert {r["method"]: r["meets_power"] for r in data["verdict"]} == front["meets_power"].to_dict()


def test_the_power_goal_is_read_from_the_config(tmp_path):
    """power.seeds=2 with runs on seeds 0-1: every selected point has its seeds, so no `next:` line; a half-width
    goal no interval meets leaves every method short."""
    root = synthetic_root(tmp_path, seeds=(0, 1), n_task=60, n_spur=60, true={"sft": TRUE["sft"], "grasp": TRUE["grasp"]},
                          verdict_cfg={"power": {"half_width": 0.001, "seeds": 2}})
    out = aggregate(root, quiet=True)
    assert out["next"] == [] and not out["verdict"]["meets_power"].any()
    assert "Power: 0 of 2 methods meet the goal (half-width <= 0.001 with >= 2 seeds" in (root / "results.md").read_text()


def test_power_settings_are_checked_and_old_verdicts_stay_readable():
    assert Settings.from_config({"power": {"half_width": 0.2, "seeds": 3}}, "c.yaml") == Settings(power_half_width=0.2,
                                                                                                   power_seeds=3)
    assert Settings.from_config({"power": {"seeds": 3}}, "c.yaml").power_half_width == 0.10  # a key left out: default
    for node, key in (({"half_width": 0}, "power.half_width=0"), ({"half_width": "0.1"}, "power.half_width='0.1'"),
                      ({"half_width": 1.5}, "power.half_width=1.5"), ({"seeds": 0}, "power.seeds=0"),
                      ({"seeds": 2.5}, "power.seeds=2.5"), ({"seeds": True}, "power.seeds=True")):
        with pytest.raises(BadInput, match=rf"^c\.yaml: verdict\.{re.escape(key)}: expected "):
            Settings.from_config({"power": node}, "c.yaml")
    with pytest.raises(BadInput, match=r"^c\.yaml: verdict\.power=5: expected a mapping"):
        Settings.from_config({"power": 5}, "c.yaml")
    # a verdict.json written before the goal was recorded: the default goal, each row's power from its interval
    old = {"settings": {"selection": {"fraction": 0.5, "seed": 0}, "task_cost": 0.03, "rank_on": ["eval/x"],
                        "resamples": 2000},
           "verdict": [{"method": "sft", "low": 0.80, "high": 0.90, "selected_seeds": [0, 1, 2, 3, 4]},
                       {"method": "kl", "low": 0.0, "high": 0.3, "selected_seeds": [0, 1, 2, 3, 4]},
                       {"method": "grasp", "low": 0.1, "high": 0.12}],  # no selected_seeds: not recorded
           "pairs": []}
    front, _, read = from_json(old)
    assert read == Settings(rank_on=("eval/x",))
    assert front["half_width"].tolist() == pytest.approx([0.05, 0.15, 0.01])
    assert front["meets_power"].tolist() == [True, False, False]
    again = from_json(to_json(front, pd.DataFrame(), Settings(power_half_width=0.2, power_seeds=3)))
    assert again[2] == Settings(power_half_width=0.2, power_seeds=3)  # the goal round-trips through verdict.json
