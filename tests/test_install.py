"""Installed like a library: `pip install .` (not editable) into a fresh venv, then, from another directory,
`grasp-bench --help`, a tiny run, and runs of a task and a method defined in a user's own folder, added with
Hydra's `--config-dir` and with `hydra.searchpath`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from grasp_bench.artifacts import load_json
from tests.conftest import REPO, TINY

USER_MODULE = '''
from grasp_bench.artifacts import write_jsonl
from grasp_bench.chat import chat
from grasp_bench.method import Method


def build(data_dir, task):
    write_jsonl(data_dir / "train.jsonl", [{"messages": chat(f"What is {i} + {i}?", str(2 * i))} for i in range(8)])
    write_jsonl(data_dir / "eval.jsonl", [{"id": f"e{i}", "messages": chat(f"What is {i} + 1?"), "answer": str(i + 1)}
                                          for i in range(4)])


class Quiet(Method):
    """Plain fine-tuning that reports one diagnostic."""

    def __init__(self, name="quiet", strength=0.0, grid=None, note="hi"):
        super().__init__(name, strength, grid)
        self.note = note

    def prepare(self, ctx):
        ctx.diagnostics["quiet/note_len"] = len(self.note)
'''
USER_TASK = """# A user's own task, outside the package.
name: my_task
build: my_bench.build
data_dir: ${paths.runs}/.my_task_data
train: {path: "${task.data_dir}/train.jsonl", limit: null}
splits:
  eval:
    path: ${task.data_dir}/eval.jsonl
    limit: null
    scorers: {correct: {rule: expected_answer, field: answer}}
metrics:
  eval/task_score: {split: eval, scorer: correct}
sampling: {temperature: 0.0, top_p: 1.0, max_new_tokens: 4, samples: 1}
"""
USER_METHOD = """# A user's own method, outside the package.
_target_: my_bench.Quiet
name: quiet
strength: 0.0
note: hi
"""
SMALL = ["model=tiny", "sweep=none", "train.max_steps=2", "train.precision=fp32", "train.batch_size=4",
         "generator.batch_size=8"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A fresh venv holding a non-editable install of a copy of the repository; torch and the other dependencies
    come from this interpreter's site-packages through a .pth path (its own .pth files, such as an editable
    install's finder, are not executed)."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv*", "runs", "__pycache__", "*.egg-info",
                                                             "build", ".pytest_cache", ".ruff_cache", "wandb"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-build-isolation", str(src)], check=True, capture_output=True, timeout=300)
    work = root / "elsewhere"
    (work / "conf" / "task").mkdir(parents=True)
    (work / "conf" / "method").mkdir()
    (work / "my_bench.py").write_text(USER_MODULE)
    (work / "conf" / "task" / "my_task.yaml").write_text(USER_TASK)
    (work / "conf" / "method" / "quiet.yaml").write_text(USER_METHOD)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    where = subprocess.run([str(python), "-c", "import grasp_bench.baselines.grasp as g; print(g.__file__)"],
                           capture_output=True, text=True, cwd=work, env=env, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the installed copy, not the repository
    return {"bin": venv / "bin", "work": work, "env": env}


def cli(installed: dict, *args: str, user_module: bool = False) -> subprocess.CompletedProcess:
    env = dict(installed["env"], **({"PYTHONPATH": str(installed["work"])} if user_module else {}))
    return subprocess.run([str(installed["bin"] / "grasp-bench"), *args], capture_output=True, text=True,
                          cwd=installed["work"], env=env, timeout=600)


def test_installed_help_lists_the_config_groups(installed):
    out = cli(installed, "--help")
    assert out.returncode == 0, out.stderr
    assert "task: " in out.stdout and "toy_rude" in out.stdout and "grasp" in out.stdout
    plugins = subprocess.run([str(installed["bin"] / "python"), "-c", "import hydra_plugins, pkgutil; "
                              "print([m.name for m in pkgutil.iter_modules(hydra_plugins.__path__)])"],
                             capture_output=True, text=True, cwd=installed["work"], env=installed["env"])
    assert "grasp_bench_sweeper" in plugins.stdout, plugins.stderr  # sweep=tradeoff's method_grid sweeper


def test_installed_tiny_run(installed, tmp_path):
    out = cli(installed, *TINY, "train.max_steps=2", f"paths.runs={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = load_json(tmp_path / "toy_rude" / "tiny" / "sft" / "strength=0" / "seed=0" / "metrics" / "rule.json")
    assert metrics["eval/task_score_n"] == 6


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_a_task_and_a_method_from_a_users_folder(installed, tmp_path, how):
    conf = installed["work"] / "conf"
    added = ["--config-dir", str(conf)] if how == "--config-dir" else [f"hydra.searchpath=[file://{conf}]"]
    out = cli(installed, *added, "task=my_task", "method=quiet", *SMALL, f"paths.runs={tmp_path}", user_module=True)
    assert out.returncode == 0, out.stderr[-3000:]
    # the method's knobs are at their defaults (read from the user's method config): the directory is just `quiet`
    metrics = load_json(tmp_path / "my_task" / "tiny" / "quiet" / "strength=0" / "seed=0" / "metrics" / "rule.json")
    assert metrics["eval/task_score_n"] == 4 and metrics["quiet/note_len"] == 2
    typo = cli(installed, *added, "task=my_task", "method=quiet", "method.note_=x", *SMALL, user_module=True)
    assert typo.returncode == 2 and "note_" in typo.stderr  # validated against the same search path
