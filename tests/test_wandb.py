"""`logger=wandb` in offline mode, read back with wandb's own reader of the .wandb log (`wandb leet inspect`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from grasp_bench.artifacts import read_jsonl, write_json
from grasp_bench.method import Untrained
from grasp_bench.pipeline import run, run_dir
from grasp_bench.report import aggregate
from grasp_bench.tracking import is_secret
from tests.conftest import compose_config

wandb = pytest.importorskip("wandb")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh $HOME, and a fresh wandb service that sees it (the service outlives runs within a process)."""
    wandb.teardown()
    home = tmp_path / "home"
    home.mkdir()
    cache = os.environ.get("GRASP_BENCH_CACHE", str(Path("~/.cache/grasp-bench").expanduser()))
    monkeypatch.setenv("GRASP_BENCH_CACHE", cache)  # keep the built tiny model and task files
    monkeypatch.setenv("HOME", str(home))
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "XDG_CACHE_HOME",
                "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)
    yield home
    wandb.teardown()
    assert [p for p in home.rglob("*") if "wandb" in str(p).lower()] == [], "W&B wrote under $HOME"


def inspect(path: Path, summary: bool = False):
    """The records of a .wandb log (one dict per record), or with summary=True the run's final state."""
    cmd = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", *(["--summary"] if summary else []), str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out) if summary else [json.loads(line) for line in out.splitlines() if line.strip()]


def one_run(wandb_dir: Path) -> Path:
    runs = sorted(wandb_dir.glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, runs
    return runs[0]


def test_secret_keys():
    assert all(is_secret(k) for k in ["api_key", "OPENAI_API_KEY", "hf_token", "client_secret", "apikey", "password"])
    assert not any(is_secret(k) for k in ["max_new_tokens", "tokenizer", "keyword_list", "n_tokens_seen"])


def test_offline_run_mirrors_the_run_directory(tiny_cfg, home):
    cfg = tiny_cfg("method=sft", "logger=wandb", "logger.mode=offline", "logger.table_rows=5", "+hf_token=hf_abc")
    metrics = run(cfg)
    d = run_dir(cfg)
    log = one_run(d / "wandb")
    records = inspect(log)
    state = inspect(log, summary=True)

    header = next(r["run"] for r in records if r["type"] == "run")
    assert (header["display_name"], header["run_group"], header["job_type"]) == ("sft-s0-seed0", "toy_rude/tiny", "sft")
    config = state["config"]
    assert "hf_token" not in config and "hf_abc" not in json.dumps(config)
    assert config["task"]["sampling"]["max_new_tokens"] == 6 and config["train"]["lr"] == cfg.train.lr
    assert (state["state"], state["exit_code"]) == ("finished", 0)

    for key, value in metrics.items():  # the metrics file is the summary
        assert state["summary"][key] == (pytest.approx(value) if isinstance(value, float) else value), key
    history = [r["history"]["item"] for r in records if r["type"] == "history" and "train/loss" in r["history"]["item"]]
    train_log = read_jsonl(d / "train_log.jsonl")
    assert [h["_step"] for h in history] == [row["step"] for row in train_log] == [1, 2, 3]
    assert [h["train/loss"] for h in history] == pytest.approx([row["train/loss"] for row in train_log])
    assert all({"train/grad_norm", "train/lr"} <= set(h) for h in history)

    table_file = log.parent / "files" / state["summary"]["generations"]["path"]
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["id", "split", "sample", "prompt", "completion", "correct", "factor"]
    assert len(table["data"]) == 5
    scores = {(j["id"], j["scorer"]): j["score"] for j in read_jsonl(d / "judgments" / "rule.jsonl")}
    completions = {g["id"]: g["completion"] for g in read_jsonl(d / "generations.jsonl")}
    for row in table["data"]:
        cells = dict(zip(table["columns"], row, strict=True))
        assert cells["completion"] == completions[cells["id"]]
        assert cells["factor"] == scores[(cells["id"], "factor")]
        assert cells["correct"] == scores.get((cells["id"], "correct"))  # only in_domain rows have one
    assert (Path(cfg.paths.runs) / ".wandb" / "cache").is_dir()  # W&B's own cache went under the runs root


class FailsAtEval(Untrained):
    def generating(self, model, ctx):
        raise RuntimeError("broken on purpose")


def test_failed_job_is_finished_as_failed(tiny_cfg, home, tmp_path):
    cfg = tiny_cfg("method=base", "logger=wandb", "logger.mode=offline", f"method._target_={__name__}.FailsAtEval")
    with pytest.raises(RuntimeError, match="broken on purpose"):  # after validation, while the run runs
        run(cfg)
    state = inspect(one_run(run_dir(cfg) / "wandb"), summary=True)
    assert (state["state"], state["exit_code"]) == ("failed", 1)


def test_disabled_mode_writes_nothing(tiny_cfg):
    cfg = tiny_cfg("method=base", "logger=wandb", "logger.mode=disabled")
    run(cfg)
    assert not (run_dir(cfg) / "wandb").exists() and not (Path(cfg.paths.runs) / ".wandb").exists()


def test_report_run_logs_table_scatter_and_plot(runs, home):
    for method, x, y in [("base", 0.2, 0.1), ("sft", 0.8, 0.6)]:
        write_json(runs / "toy_rude" / "tiny" / method / "strength=0" / "seed=0" / "metrics" / "rule.json", {
            "task": "toy_rude", "model": "tiny", "method": method, "variant": method, "strength": 0.0, "seed": 0,
            "judge": "rule", "eval/task_score": x, "eval/task_score_n": 10, "eval/task_score_n_unscored": 0,
            "eval/spurious_rate": y, "eval/spurious_rate_n": 10, "eval/spurious_rate_n_unscored": 0})
    logger_cfg = compose_config("logger=wandb", "logger.mode=offline", runs=runs).logger
    aggregate(runs, quiet=True, logger_cfg=logger_cfg)

    log = one_run(runs / ".wandb" / "wandb")
    records = inspect(log)
    state = inspect(log, summary=True)
    header = next(r["run"] for r in records if r["type"] == "run")
    assert (header["job_type"], header["display_name"], header["run_group"]) == ("report", "report", "toy_rude/tiny")
    assert state["exit_code"] == 0

    results = pd.read_csv(runs / "results.csv")
    table = json.loads((log.parent / "files" / state["summary"]["results"]["path"]).read_text())
    logged = pd.DataFrame(table["data"], columns=table["columns"])
    assert list(logged.columns) == list(results.columns)
    assert logged["eval/task_score"].tolist() == results["eval/task_score"].tolist() == [0.2, 0.8]

    chart = next(r["config"]["update"]["_wandb.visualize.tradeoff"] for r in records
                 if r["type"] == "config" and "_wandb.visualize.tradeoff" in r["config"]["update"])
    assert chart["panel_config"]["panelDefId"] == "wandb/scatter/v0"
    assert chart["panel_config"]["fieldSettings"] == {"x": "eval/task_score", "y": "eval/spurious_rate"}
    image = state["summary"]["plots/tradeoff_toy_rude_tiny_rule"]
    assert image["_type"] == "image-file" and (log.parent / "files" / image["path"]).stat().st_size > 1000
