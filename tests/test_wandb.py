"""`logger=wandb` in offline mode, read back with wandb's own reader of the .wandb log (`wandb leet inspect`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from grasp_bench.artifacts import load_json, read_jsonl, write_json
from grasp_bench.method import Method, Untrained
from grasp_bench.pipeline import run, run_dir
from grasp_bench.report import aggregate
from grasp_bench.tracking import is_secret
from tests.conftest import TINY, compose_config
from tests.test_verdict import write_run

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


def test_report_run_logs_tables_chart_and_plot(runs, home):
    points = [("base", 0.0, 0, 0.2, 0.1), ("sft", 0.0, 0, 0.8, 0.6), ("sft", 0.0, 1, 0.7, 0.5),
              ("grasp", 0.5, 0, 0.8, 0.4), ("grasp", 1.0, 0, 0.6, 0.2), ("grasp", 1.0, 1, 0.6, 0.3)]
    for method, strength, seed, x, y in points:  # 10 judged replies per split: x and y exactly
        write_run(runs, "toy_rude", method, strength, seed, [1.0] * round(10 * x) + [0.0] * round(10 - 10 * x),
                  [1.0] * round(10 * y) + [0.0] * round(10 - 10 * y), role="test")  # toy_rude ships as development
    for d in runs.glob("toy_rude/m"):
        d.rename(d.parent / "tiny")
    for f in runs.glob("toy_rude/tiny/**/metrics/rule.json"):
        write_json(f, {**load_json(f), "model": "tiny"})
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
    assert logged["eval/task_score"].tolist() == results["eval/task_score"].tolist()

    def table(key: str) -> pd.DataFrame:
        data = json.loads((log.parent / "files" / state["summary"][key]["path"]).read_text())
        return pd.DataFrame(data["data"], columns=data["columns"])

    means = table("seed_means").set_index(["variant", "strength"])
    assert means.loc[("grasp", 1.0), "eval/spurious_rate"] == pytest.approx(0.25)
    assert means.loc[("grasp", 1.0), "seeds"] == 2 and "eval/spurious_rate_std" in means
    verdict = table("verdict")  # the paired verdict (grasp_bench.verdict), naive SFT as its reference row
    assert sorted(verdict["method"]) == ["grasp", "sft"] and {"headline", "low", "high"} <= set(verdict.columns)
    assert len(table("verdict_pairs")) == 1

    key = "_wandb.visualize.tradeoff/toy_rude/tiny/rule"
    chart = next(r["config"]["update"][key] for r in records if r["type"] == "config" and key in r["config"]["update"])
    assert chart["panel_config"]["panelDefId"] == "wandb/lineseries/v0"  # one line per method, legend = method
    series = table(f"{key.removeprefix('_wandb.visualize.')}_table")
    by_method = {m: list(zip(part["step"], part["lineVal"])) for m, part in series.groupby("lineKey")}
    assert by_method == {"base": [(0.2, 0.1)], "sft": [(0.75, 0.55)], "grasp": [(0.8, 0.4), (0.6, 0.25)]}
    image = state["summary"]["plots/tradeoff_toy_rude_tiny_rule"]
    assert image["_type"] == "image-file" and (log.parent / "files" / image["path"]).stat().st_size > 1000


def test_a_rerun_resumes_its_wandb_run(tiny_cfg, home):
    """The same job twice (the second finds every stage done): one W&B run id, tagged with what the run is."""
    cfg = tiny_cfg("method=sft", "logger=wandb", "logger.mode=offline", "logger.table_rows=0")
    run(cfg)
    run(cfg)
    logs = sorted((run_dir(cfg) / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logs) == 2  # offline, each process writes its own log; `wandb sync` sends both to the one run id
    headers = [next(r["run"] for r in inspect(log) if r["type"] == "run") for log in logs]
    assert len({h["run_id"] for h in headers}) == 1
    assert headers[0]["tags"] == ["task=toy_rude", "model=tiny", "method=sft", "seed=0"]
    other = tiny_cfg("method=sft", "seed=1", "logger=wandb", "logger.mode=offline", "logger.table_rows=0")
    run(other)
    log = one_run(run_dir(other) / "wandb")
    assert next(r["run"] for r in inspect(log) if r["type"] == "run")["run_id"] != headers[0]["run_id"]


class ConstantExtraLoss(Method):
    """Naive SFT plus a constant loss term: the gradients, hence the task loss, are naive SFT's."""

    def extra_loss(self, model, batch, ctx):
        return torch.tensor(0.75)


def test_train_loss_is_the_task_loss_and_the_method_term_is_logged_apart(tiny_cfg, home, tmp_path):
    naive = tiny_cfg("method=sft", "stages=[train]")
    run(naive)
    cfg = compose_config(*TINY, "method=sft", "stages=[train]", f"method._target_={__name__}.ConstantExtraLoss",
                         "logger=wandb", "logger.mode=offline", runs=tmp_path / "with_extra")  # its own runs root
    run(cfg)
    ours, theirs = read_jsonl(run_dir(cfg) / "train_log.jsonl"), read_jsonl(run_dir(naive) / "train_log.jsonl")
    assert [r["train/loss"] for r in ours] == pytest.approx([r["train/loss"] for r in theirs], abs=1e-4)
    assert [r["sft/extra_loss"] for r in ours] == pytest.approx([0.75] * len(theirs))
    history = [r["history"]["item"] for r in inspect(one_run(run_dir(cfg) / "wandb")) if r["type"] == "history"]
    assert [h["sft/extra_loss"] for h in history if "sft/extra_loss" in h] == pytest.approx([0.75] * len(theirs))


def test_wandb_mode_alone_gets_a_one_line_notice(runs, monkeypatch, capsys):
    from grasp_bench.cli import validate_jobs

    monkeypatch.setenv("WANDB_MODE", "offline")
    validate_jobs([*TINY, f"paths.runs={runs}"])
    assert capsys.readouterr().err == ("note: WANDB_MODE=offline alone does not turn W&B on (logger=none); add "
                                       "logger=wandb (its mode follows WANDB_MODE) or logger=wandb logger.mode=offline\n")
    validate_jobs([*TINY, f"paths.runs={runs}", "logger=wandb"])  # on: offline, as WANDB_MODE says
    assert capsys.readouterr().err == ""
    monkeypatch.delenv("WANDB_MODE")
    validate_jobs([*TINY, f"paths.runs={runs}", "logger=wandb"])
    assert capsys.readouterr().err == ("note: logger=wandb logs nothing with logger.mode=disabled; set "
                                       "logger.mode=offline (or online)\n")


def test_transformers_does_not_announce_wandb_offline_mode():
    code = ("from grasp_bench.tracking import quiet_transformers_import; quiet_transformers_import(); "
            "import transformers.integrations.integration_utils, os; print(os.environ['WANDB_MODE'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "WANDB_MODE": "offline"})
    assert out.stdout == "offline\n" and "WANDB" not in out.stderr
