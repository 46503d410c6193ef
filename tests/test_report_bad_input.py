"""grasp-bench-report on a damaged runs root: one line `error: <file>: ...` on stderr, exit code 2, no traceback,
and the results files of the last good report kept."""

from __future__ import annotations

import json
import math

import pytest

from grasp_bench.artifacts import BadInput, write_json
from grasp_bench.report import aggregate, main

GOOD = {"task": "toy", "model": "m", "method": "sft", "variant": "sft", "strength": 0.0, "seed": 0, "judge": "rule",
        "eval/task_score": 0.6, "eval/task_score_n": 10, "eval/task_score_n_unscored": 0,
        "eval/spurious_rate": math.nan, "eval/spurious_rate_n": 10, "eval/spurious_rate_n_unscored": 10,
        "train/final_loss": None}  # as the metrics stage writes them: nan for all unscored, null without a loss
RUN = "toy/m/sft/strength=0/seed=0"
DAMAGED = "toy/m/grasp/strength=1/seed=0"  # a second run, whose file is damaged
METRICS, CONFIG = f"{DAMAGED}/metrics/rule.json", f"{DAMAGED}/config.yaml"


def good(**changes) -> bytes:
    row = {**GOOD, "method": "grasp", "variant": "grasp", "strength": 1.0, **changes}
    return json.dumps({k: v for k, v in row.items() if v is not ...}).encode()


CASES = {  # name: (damaged file, its bytes, what the message must also name)
    "not_json": (METRICS, b'{"task": "x", oops\n', "not valid JSON"),
    "empty": (METRICS, b"", "not valid JSON"),
    "not_utf8": (METRICS, b'{"task": "\xff"}', "not valid JSON"),
    "a_list": (METRICS, b"[1, 2, 3]", "expected a JSON object, got list"),
    "empty_object": (METRICS, b"{}", "'task'"),
    "no_task": (METRICS, good(task=...), "no 'task' key"),
    "string_metric": (METRICS, good(**{"eval/task_score": "high"}), "eval/task_score='high'"),
    "string_strength": (METRICS, good(strength="zero"), "strength='zero'"),
    "null_seed": (METRICS, good(seed=None), "seed=None"),
    "config_not_yaml": (CONFIG, b"task: [unclosed\n  x: :\n", "not valid YAML"),
    "unknown_report_metric": (CONFIG, b"task:\n  report_metrics: [nosuch_module.fn]\n", "'nosuch_module.fn'"),
}


@pytest.fixture
def root(tmp_path):
    """A runs root with one valid run and the results files of an earlier report."""
    write_json(tmp_path / RUN / "metrics" / "rule.json", GOOD)
    (tmp_path / DAMAGED / "metrics").mkdir(parents=True)
    (tmp_path / "results.csv").write_text("earlier report\n")
    return tmp_path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err.strip()


@pytest.mark.parametrize("case", CASES)
def test_damaged_file_is_one_line_naming_it_and_exit_2(root, case, capsys):
    name, data, expected = CASES[case]
    if name == CONFIG:  # the run's metrics file is fine: its config is damaged
        (root / METRICS).write_bytes(good())
    (root / name).write_bytes(data)
    with pytest.raises(SystemExit) as exit_:
        main([str(root)])
    assert exit_.value.code == 2
    line = one_error_line(capsys)
    assert f"error: {root / name}" in line and expected in line
    if name == METRICS:
        assert "force=[metrics]" in line  # the cure
    assert (root / "results.csv").read_text() == "earlier report\n"  # nothing of the last report is lost


def test_aggregate_raises_bad_input_for_the_multirun_callback(root):
    (root / METRICS).write_bytes(b"[]")
    with pytest.raises(BadInput, match="rule.json: expected a JSON object"):
        aggregate(root, quiet=True)


@pytest.mark.parametrize(("make", "expected"), [(lambda p: p.write_text("x"), "is not a directory"),
                                                (lambda p: None, "no such directory")])
def test_runs_root_not_a_directory(tmp_path, make, expected, capsys):
    path = tmp_path / "runs"
    make(path)
    with pytest.raises(SystemExit) as exit_:
        main([str(path)])
    assert exit_.value.code == 2 and one_error_line(capsys) == f"error: {path}: {expected}"


def test_valid_metrics_files_with_nan_and_null_are_reported(root):
    (root / METRICS).write_bytes(good())
    assert aggregate(root, quiet=True)["rows"] == 2


def test_a_folder_without_metrics_files_is_one_line_naming_paths_runs(tmp_path, capsys):
    (tmp_path / "toy" / "m").mkdir(parents=True)  # a run that never reached its metrics stage
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path)])
    assert exit_.value.code == 2
    assert one_error_line(capsys) == (
        f"error: {tmp_path}: no metrics files (<task>/<model>/<method>/strength=<s>/seed=<k>/metrics/<judge>.json) "
        "under it: name the runs root your runs wrote to (their paths.runs)")


def test_a_multirun_that_leaves_no_metrics_ends_with_that_line_and_exit_2(tmp_path, capsys):
    from omegaconf import OmegaConf

    from grasp_bench.cli import ReportCallback

    config = OmegaConf.create({"paths": {"runs": str(tmp_path / "runs")}, "stages": ["train", "generate", "judge",
                               "metrics"], "logger": None, "hydra": {"sweep": {"dir": str(tmp_path / "multirun")}}})
    with pytest.raises(SystemExit) as exit_:
        ReportCallback().on_multirun_end(config)
    assert exit_.value.code == 2
    assert one_error_line(capsys).startswith(f"error: the report: {tmp_path / 'runs'}: no metrics files")
    config.stages = ["train"]  # a training-only sweep has nothing to report: no error
    ReportCallback().on_multirun_end(config)


def test_a_missing_verdict_says_why_one_line_each(tmp_path, capsys):
    def metrics(method: str, strength: float, seed: int, **changes) -> None:
        row = {**GOOD, "method": method, "variant": method, "strength": strength, "seed": seed,
               "eval/spurious_rate": 0.5, **changes}
        write_json(tmp_path / f"toy/m/{method}/strength={strength:g}/seed={seed}/metrics/rule.json", row)

    metrics("grasp", 1.0, 0)
    metrics("grasp", 1.0, 1)
    metrics("grasp", 1.0, 2)
    metrics("sft", 0.0, 0)
    metrics("sft", 0.0, 1, **{"eval/spurious_rate": math.nan})  # every row unscored
    aggregate(tmp_path)
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: toy/m (judge rule): no `base` run: the plot and tables have no base-model point; add method=base for "
        "seeds 0, 1, 2",
        "note: toy/m (judge rule): grasp: seed 2 without a `sft` run: compared with SFT's mean over other seeds, not "
        "paired; add method=sft for seed 2"]
    for seed in (0, 1):
        (tmp_path / f"toy/m/sft/strength=0/seed={seed}/metrics/rule.json").unlink()
    assert aggregate(tmp_path, quiet=True)["notes"][1:] == [
        "toy/m (judge rule): no verdict: no `sft` run; add method=sft for seeds 0, 1, 2"]
