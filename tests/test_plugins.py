"""A method from a folder of one's own, as docs/extending.md shows it (its two code blocks are the plugin), run as a
user runs it: real subprocesses, `--config-dir` and `PYTHONPATH`. Bad inputs are one line and exit code 2;
`grasp-bench-check-method` runs the method contract on it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from grasp_bench import cli
from tests.conftest import REPO, TINY

BIN = Path(sys.executable).parent


@pytest.fixture
def plugin(tmp_path) -> Path:
    """docs/extending.md's plugin, written under tmp_path/myplugin: each fenced block whose first line is a comment
    `# myplugin/<path>` is that file."""
    text = (REPO / "docs" / "extending.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\w*\n# (myplugin/\S+)\n(.*?)```", text, flags=re.S)
    assert {path for path, _ in blocks} == {"myplugin/mymethods.py", "myplugin/method/l2_to_base.yaml"}
    for path, body in blocks:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(body, encoding="utf-8")
    return tmp_path / "myplugin"


def grasp_bench(plugin: Path, *overrides: str, pythonpath: bool = True, cmd: str = "grasp-bench"):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = str(plugin)
    runs = plugin.parent / "runs"
    return subprocess.run([str(BIN / cmd), "--config-dir", str(plugin), *TINY, f"paths.runs={runs}", *overrides],
                          capture_output=True, text=True, env=env, cwd=plugin.parent, timeout=600)


def one_line(out: subprocess.CompletedProcess) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-3000:]
    return lines[0]


@pytest.fixture
def in_process(plugin, monkeypatch, capfd):
    """`grasp-bench --config-dir <plugin> <overrides>` in this process, with the plugin on the Python path (as
    PYTHONPATH puts it): its one error line (exit code 2 asserted)."""
    monkeypatch.syspath_prepend(str(plugin))
    sys.modules.pop("mymethods", None)

    def call(*overrides: str, multirun: bool = False) -> str:
        monkeypatch.setattr(sys, "argv", ["grasp-bench", *(["-m"] if multirun else []), "--config-dir", str(plugin), *TINY,
                                          f"paths.runs={plugin.parent / 'runs'}", *overrides])
        capfd.readouterr()
        with pytest.raises(SystemExit) as exit_:
            cli.main()
        err = capfd.readouterr().err
        assert exit_.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
        return err.strip()

    yield call
    sys.modules.pop("mymethods", None)


def test_a_plugin_off_the_python_path_is_one_line_naming_pythonpath(plugin):
    line = one_line(grasp_bench(plugin, "method=l2_to_base", pythonpath=False))
    assert line == (f"error: method._target_=mymethods.L2ToBase: no module named 'mymethods' on the Python path; "
                    f"it is in {plugin}: rerun with PYTHONPATH={plugin} (a folder is not on the Python path by itself)")


def test_a_target_typo_names_the_module_and_what_it_lacks(plugin, in_process):
    yaml = plugin / "method" / "l2_to_base.yaml"
    yaml.write_text(yaml.read_text().replace("L2ToBase", "L2ToBsae"))
    line = in_process("method=l2_to_base")
    assert line == f"error: method._target_=mymethods.L2ToBsae: module 'mymethods' ({plugin / 'mymethods.py'}) has no 'L2ToBsae'"


def test_a_module_that_fails_to_import_is_named_with_its_line(plugin, in_process):
    (plugin / "mymethods.py").write_text("import json\nimport no_such_dependency\n")
    line = in_process("method=l2_to_base")
    assert line == (f"error: method._target_=mymethods.L2ToBase: importing module 'mymethods' failed at "
                    f"{plugin / 'mymethods.py'}:2: ModuleNotFoundError: No module named 'no_such_dependency'")


@pytest.mark.parametrize("typo", ["method.lamda_max=2", "+method.lamda_max=2"])
def test_a_knob_typo_lists_the_plugins_knobs(in_process, typo):
    line = in_process("method=l2_to_base", typo)
    assert line == "error: method.lamda_max: not a knob of method 'l2_to_base' (its knobs: strength, grid, lambda_max)"


def test_a_declared_knob_out_of_range_is_refused_before_any_job(plugin, in_process):
    line = in_process("method=l2_to_base", "method.lambda_max=1,-5", "seed=0", multirun=True)
    assert line == "error: job 1 (method.lambda_max=-5): method.lambda_max=-5: expected a number >= 0"
    assert not (plugin.parent / "runs").exists()  # refused before the first job ran


def test_check_method_runs_the_contract_on_the_plugin(plugin):
    out = grasp_bench(plugin, "method=l2_to_base", cmd="grasp-bench-check-method")
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("l2_to_base:")]  # not the trainer's logs
    assert lines == ["l2_to_base: strength 0 reproduces naive SFT: ok",
                                       "l2_to_base: no hook outlives its block: ok",
                                       "l2_to_base: strength > 0 changes the model: ok"]


@pytest.mark.slow  # 50 s: the three checks' tiny runs in a subprocess (the passing case above stays in the fast tier)
def test_check_method_fails_a_method_whose_strength_zero_is_not_sft(plugin):
    code = (plugin / "mymethods.py").read_text()
    (plugin / "mymethods.py").write_text(code.replace("if lam == 0:", "if False:").replace(
        "lam = self.strength * self.lambda_max", "lam = 0.5 + self.strength * self.lambda_max"))
    out = grasp_bench(plugin, "method=l2_to_base", cmd="grasp-bench-check-method")
    assert out.returncode == 1
    assert "l2_to_base: strength 0 reproduces naive SFT: FAILED: strength 0: " in out.stdout
