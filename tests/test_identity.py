"""A run's identity (grasp_bench.identity): plan and run agree on a user's method's directory; an input file's
content is part of the stages that read it; records made before file digests still count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import open_dict

from grasp_bench.artifacts import BadInput, load_json, read_jsonl
from grasp_bench.identity import COMPATIBILITY, differs
from grasp_bench.jobs import expand
from grasp_bench.pipeline import Run, run
from grasp_bench.plan import main as plan_main
from tests.conftest import REPO, TINY

PLUGIN = '''
from grasp_bench.method import Method


class Quiet(Method):
    """Plain fine-tuning with one knob of its own."""

    def __init__(self, name="quiet", strength=0.0, grid=None, note="hi"):
        super().__init__(name, strength, grid)
        self.note = note
'''


def test_plan_names_the_directory_a_users_method_runs_in_and_sees_it_done(tmp_path, capsys):
    """A method config in a folder outside the repository, run by `grasp-bench --config-dir`: its knob at the
    YAML default names no directory, and grasp-bench-plan with the same arguments names the same directory and
    reports every stage done."""
    (tmp_path / "conf" / "method").mkdir(parents=True)
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    (tmp_path / "conf" / "method" / "quiet.yaml").write_text("_target_: my_plugin.Quiet\nname: quiet\nstrength: 0.0\n"
                                                             "note: hi\n")
    runs = tmp_path / "runs"
    args = ["--config-dir", str(tmp_path / "conf"), *TINY, "method=quiet", "train.max_steps=1", f"paths.runs={runs}"]
    done = subprocess.run([sys.executable, "-m", "grasp_bench", *args], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path}:{REPO}"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    made = runs / "toy_rude" / "tiny" / "quiet" / "strength=0" / "seed=0"
    assert (made / "metrics" / "rule.json").is_file()

    sys.path.insert(0, str(tmp_path))
    try:
        plan_main(args)
    finally:
        sys.path.remove(str(tmp_path))
    out = capsys.readouterr().out
    assert f"run: {made}\n" in out
    assert "stages: train done, skipped; generate done, skipped; judge done, skipped; metrics done, skipped" in out


def _task(tmp_path: Path, train_rows: int) -> tuple[Path, Path, list[str]]:
    """A file-defined task (no build) in tmp_path: its training and evaluation files, and a job's arguments."""
    data, conf = tmp_path / "data", tmp_path / "conf"
    (conf / "task").mkdir(parents=True)
    data.mkdir()
    train, evaluation = data / "train.jsonl", data / "eval.jsonl"
    _write_train(train, train_rows)
    evaluation.write_text("".join(json.dumps({"id": f"e{i}", "messages": [{"role": "user", "content": f"{i} + 1?"}],
                                              "answer": str(i + 1)}) + "\n" for i in range(3)))
    (conf / "task" / "my_task.yaml").write_text(f"""name: my_task
train: {{path: {train}, limit: null}}
splits:
  eval: {{path: {evaluation}, limit: null, scorers: {{correct: {{rule: expected_answer, field: answer}}}}}}
metrics:
  eval/task_score: {{split: eval, scorer: correct}}
sampling: {{temperature: 0.0, top_p: 1.0, max_new_tokens: 4, samples: 1}}
""")
    overrides = ["task=my_task", "model=tiny", "sweep=none", "method=sft", "train.precision=fp32", "train.batch_size=4",
                 "train.max_steps=-1", "train.epochs=1", "generator.batch_size=8", f"paths.runs={tmp_path / 'runs'}"]
    return train, evaluation, [str(conf), *overrides]


def _write_train(path: Path, rows: int) -> None:
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"{i} + {i}?"},
                                                     {"role": "assistant", "content": str(2 * i)}]}) + "\n"
                            for i in range(rows)))


def _job(conf: str, *overrides: str):
    """The job as `grasp-bench --config-dir conf` runs it (without the `hydra` node a running app does not see)."""
    [cfg] = expand(list(overrides), config_dir=conf)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def test_an_edited_training_file_makes_training_and_everything_after_it_again(tmp_path, capsys):
    """An edited input file reruns exactly what depends on it, saying so in one line naming the file."""
    train, _, (conf, *overrides) = _task(tmp_path, train_rows=8)
    run(_job(conf, *overrides))
    d = Run(_job(conf, *overrides)).dir
    assert load_json(d / "stages" / "train.json")["steps"] == 2
    capsys.readouterr()
    _write_train(train, 12)  # 4 rows more: 3 steps of 4
    run(_job(conf, *overrides))
    assert f"stage 'train' is made again: {train}: content changed" in capsys.readouterr().err
    assert load_json(d / "stages" / "train.json")["steps"] == 3
    assert all(Run(_job(conf, *overrides)).stage(s).is_done() for s in ("train", "generate", "judge", "metrics"))


def test_an_edited_training_file_leaves_the_base_run(tmp_path):
    train, _, (conf, *overrides) = _task(tmp_path, train_rows=8)
    base = [*overrides, "method=base"]
    run(_job(conf, *base))
    _write_train(train, 12)
    assert Run(_job(conf, *base)).stage("generate").is_done()


def test_a_changed_config_key_is_still_refused(tmp_path):
    _, _, (conf, *overrides) = _task(tmp_path, train_rows=8)
    run(_job(conf, *overrides))
    with pytest.raises(BadInput, match=r"stage 'train' was made with another config \(train.lr"):
        Run(_job(conf, *overrides, "train.lr=0.5")).stage("train").is_done()


def test_an_edited_evaluation_file_keeps_the_training(tmp_path):
    _, evaluation, (conf, *overrides) = _task(tmp_path, train_rows=8)
    run(_job(conf, *overrides))
    d = Run(_job(conf, *overrides)).dir
    adapter = (d / "model" / "adapter_model.safetensors").stat().st_mtime_ns
    evaluation.write_text(evaluation.read_text() + json.dumps(
        {"id": "e3", "messages": [{"role": "user", "content": "3 + 1?"}], "answer": "4"}) + "\n")
    r = Run(_job(conf, *overrides))
    assert r.stage("train").is_done()  # training never read the evaluation file
    assert not r.stage("generate").is_done()
    run(_job(conf, *overrides))
    assert (d / "model" / "adapter_model.safetensors").stat().st_mtime_ns == adapter
    assert len(read_jsonl(d / "generations.jsonl")) == 4
    assert load_json(d / "metrics" / "rule.json")["eval/task_score_n"] == 4


def test_a_record_made_before_file_digests_counts():
    """Rule `file_digests`: a record without a file's digest reads as made from the file as it is now; a record
    with another digest does not count."""
    new = {"task": {"train": {"path": "/d/train.jsonl"}}, "files": {"/d/train.jsonl": "ab" * 32}}
    assert differs({"task": new["task"]}, new) is None
    assert differs({**new, "files": {"/d/train.jsonl": "cd" * 32}}, new) == (
        f"/d/train.jsonl: content changed ({'cd' * 8} -> {'ab' * 8})", True)
    moved = {"task": {"train": {"path": "/e/train.jsonl"}}, "files": {"/e/train.jsonl": "ab" * 32}}
    assert differs(moved, new).text.startswith("task.train.path: '/e/train.jsonl' -> '/d/train.jsonl'")  # the key first


def test_every_compatibility_rule_says_what_it_reads_when_it_retires_and_where_it_applies():
    import importlib

    assert len({r.name for r in COMPATIBILITY}) == len(COMPATIBILITY)
    for rule in COMPATIBILITY:
        assert rule.reads and rule.retire, rule.name
        owner, _, name = rule.where.rpartition(".")  # the function that applies it exists
        scope = importlib.import_module(f"grasp_bench.{owner}") if owner in ("identity", "validate", "report") else (
            getattr(importlib.import_module("grasp_bench.identity"), owner))
        assert callable(getattr(scope, name, None)), rule.where


def test_a_built_task_is_named_by_its_recipe_and_a_users_file_by_its_content(tmp_path):
    """toy_rude's files come from its build: none is hashed (its versioned data_dir names them), or its recipe
    digest when the build stamps one; a training file of the user's own, outside data_dir, by its sha256."""
    import hashlib

    from grasp_bench.artifacts import write_json
    from grasp_bench.data import build_task_files
    from grasp_bench.identity import slices
    from tests.conftest import compose_config

    cfg = compose_config("sweep=none", f"paths.cache={tmp_path}")
    build_task_files(cfg.task)
    assert not any("files" in s for s in slices(cfg).values())
    write_json(Path(cfg.task.data_dir) / "BUILD.json", {"digest": "d1", "recipe": {}})
    assert slices(cfg)["generate"]["files"] == {cfg.task.data_dir: "recipe d1"}
    own = tmp_path / "mine.jsonl"
    _write_train(own, 3)
    train = slices(compose_config("sweep=none", f"paths.cache={tmp_path}", f"task.train.path={own}"))["train"]
    assert train["files"] == {str(own): hashlib.sha256(own.read_bytes()).hexdigest()}
