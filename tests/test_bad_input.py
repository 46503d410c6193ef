"""Bad input: one clear line on stderr naming the file/line/key, exit code 2, nothing computed deleted."""

from __future__ import annotations

import json
import subprocess
import sys

from grasp_bench.pipeline import run, run_dir
from tests.conftest import REPO, TINY


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grasp_bench", *TINY, *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def error_line(out: subprocess.CompletedProcess) -> str:
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1, out.stderr[-2000:]
    return errors[0]


def test_malformed_row_names_file_and_line(tmp_path):
    bad = tmp_path / "train.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    bad.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n{not json\n")
    line = error_line(cli(f"paths.runs={tmp_path / 'runs'}", f"task.train.path={bad}"))
    assert f"{bad}:3" in line and "malformed JSON" in line


def test_row_without_messages_names_file_and_line(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text(json.dumps({"prompt": "no messages here"}) + "\n")
    line = error_line(cli(f"paths.runs={tmp_path / 'runs'}", f"task.train.path={bad}"))
    assert f"{bad}:1" in line and "messages" in line


def test_missing_file(tmp_path):
    line = error_line(cli(f"paths.runs={tmp_path / 'runs'}", f"task.splits.unrelated.path={tmp_path}/nope.jsonl",
                          "method=base"))
    assert "nope.jsonl" in line and "not found" in line


def test_unknown_model_path(tmp_path):
    line = error_line(cli(f"paths.runs={tmp_path / 'runs'}", f"model.path={tmp_path}/no-such-model"))
    assert "no-such-model" in line


def test_changed_config_for_a_finished_run_is_an_error_and_deletes_nothing(tiny_cfg, runs):
    cfg = tiny_cfg("method=sft")
    run(cfg)
    d = run_dir(cfg)
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file() and p.name not in ("config.yaml", "env.json")}
    line = error_line(cli(f"paths.runs={runs}", "task.sampling.max_new_tokens=7"))
    assert "max_new_tokens" in line and "force=[generate]" in line
    after = {p: p.read_bytes() for p in d.rglob("*") if p.is_file() and p.name not in ("config.yaml", "env.json")}
    assert after == before
