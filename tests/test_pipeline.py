"""The whole pipeline end to end on the tiny model: files, metrics contract, rerun skips every stage."""

from __future__ import annotations

import json

from grasp_bench.artifacts import load_json
from grasp_bench.pipeline import run, run_dir


def test_end_to_end_then_rerun_skips(tiny_cfg):
    cfg = tiny_cfg("method=sft")
    metrics = run(cfg)
    d = run_dir(cfg)
    for f in ["config.yaml", "env.json", "model/adapter_config.json", "generations.jsonl", "judgments/rule.jsonl",
              "metrics/rule.json", "train_log.jsonl"]:
        assert (d / f).exists(), f
    assert d.parts[-5:] == ("toy_rude", "tiny", "sft", "strength=0", "seed=0")
    for key in ["eval/task_score", "eval/spurious_rate", "eval/factor_use_rate"]:
        assert 0.0 <= metrics[key] <= 1.0
        assert metrics[f"{key}_n"] == 6 and metrics[f"{key}_n_unscored"] == 0
    assert len((d / "train_log.jsonl").read_text().splitlines()) == 3

    stamps = {p: p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file() and p.name != "config.yaml"
              and p.name != "env.json"}
    assert run(cfg) == metrics
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing recomputed
    gens = [json.loads(line) for line in (d / "generations.jsonl").read_text().splitlines()]
    assert {g["split"] for g in gens} == {"in_domain", "unrelated", "factor_use"}
    assert load_json(d / "stages" / "train.json")["steps"] == 3
