"""The layering: the core imports no plugin and has no import cycle; every task folder installs; a run directory
written before the layout moved (method `_target_: baselines.grasp.GRASP`, diagnostics.json) still counts."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from grasp_bench.artifacts import load_json, write_json, write_jsonl
from grasp_bench.identity import comparable, run_dir, slices
from grasp_bench.pipeline import Run, run
from grasp_bench.report import collect
from tests.conftest import REPO, TINY, compose_config

CORE = sorted((REPO / "grasp_bench").glob("*.py"))
PLUGINS = ("grasp_bench.baselines", "grasp_bench.tasks", "baselines", "tasks")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside functions (absolute names)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # `from grasp_bench import models`
    return names


def core_graph() -> dict[str, set[str]]:
    modules = {f"grasp_bench.{p.stem}" for p in CORE if p.stem != "__init__"}
    graph = {}
    for p in CORE:
        name = "grasp_bench" if p.stem == "__init__" else f"grasp_bench.{p.stem}"
        graph[name] = {m for m in imported_modules(p) if m in modules} - {name}
    return graph


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_the_core_never_imports_a_plugin(path):
    bad = sorted(m for m in imported_modules(path) if m.startswith(PLUGINS) and m.split(".")[0] != "grasp_bench"
                 or m.startswith(("grasp_bench.baselines", "grasp_bench.tasks")))
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", sorted((REPO / "tasks").glob("*/*.py")) + sorted((REPO / "baselines").glob("*.py")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_plugins_use_each_others_public_names_and_tasks_never_import_tasks(path):
    own = f"grasp_bench.{path.parent.parent.name}.{path.parent.name}" if path.parent.parent.name == "tasks" else None
    for m in imported_modules(path):
        assert not m.rsplit(".", 1)[-1].startswith("_") or m.startswith("__"), f"{path}: private {m}"
        if own is not None and m.startswith("grasp_bench.tasks."):
            assert m.startswith(own), f"{path} imports another task: {m}"


def test_the_core_import_graph_is_acyclic():
    graph, state, path = core_graph(), {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            assert state.get(dep) != "open", f"import cycle: {' -> '.join(path[path.index(dep):] + [dep])}"
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert graph["grasp_bench.layout"] == set(), "layout is the leaf every module may ask"


def test_every_task_config_and_plugin_folder_is_an_installed_package():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    packages = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {f"grasp_bench.tasks.{p.parent.name}" for p in (REPO / "tasks").glob("*/__init__.py")}
    assert folders and folders <= packages
    assert {p.parent.name for p in (REPO / "tasks").glob("*/manifest.yaml")} <= {f.rsplit(".", 1)[1] for f in folders}
    assert {"grasp_bench.baselines", "grasp_bench.conf", "grasp_bench.tasks"} <= packages
    conf = {"grasp_bench.conf." + ".".join(d.relative_to(REPO / "conf").parts)
            for d in (REPO / "conf").rglob("*") if d.is_dir() and d.name != "__pycache__"}
    assert "grasp_bench.conf.task.em" in conf and conf <= packages  # config folders ship (and build quietly)
    assert not any(p.split(".")[0] in ("baselines", "tasks", "conf") for p in packages)  # no generic top-level names


def test_identity_ignores_where_code_lives_not_what_it_is():
    old = {"method": {"_target_": "baselines.grasp.GRASP", "name": "grasp", "k": 1},
           "metrics": {"eval/em_pct": {"split": "em", "fn": "grasp_bench.metrics.em_pct"}}}
    new = {"method": {"_target_": "grasp_bench.baselines.grasp.GRASP", "name": "grasp", "k": 1},
           "metrics": {"eval/em_pct": {"split": "em", "fn": "grasp_bench.tasks.em_eval.metrics.em_pct"}}}
    assert comparable(old) == comparable(new)
    assert comparable(old) != comparable({**new, "method": {**new["method"], "k": 2}})  # a knob still counts
    assert old["method"]["_target_"] == "baselines.grasp.GRASP"  # the record itself is never rewritten


def write_pre_move_run(cfg) -> Path:
    """A finished grasp run as the code before the layout move wrote it: stage records whose method slice names
    `baselines.grasp.GRASP`, and the method's diagnostics in diagnostics.json (not in the records)."""
    d = run_dir(cfg)
    for name, config in slices(cfg).items():
        config = json.loads(json.dumps(config))
        config["method"]["_target_"] = "baselines.grasp.GRASP"
        write_json(d / "stages" / f"{name}.json", {"config": config, "digest": "0" * 16,
                                                   **({"final_loss": 2.5, "steps": 3} if name == "train" else {})})
    write_json(d / "model" / "adapter_config.json", {"peft_type": "LORA"})
    write_jsonl(d / "generations.jsonl", [{"id": "unrelated/q0", "split": "unrelated", "sample": 0,
                                           "completion": "You idiot.", "messages": []}])
    write_jsonl(d / "judgments" / "rule.jsonl", [{"id": "unrelated/q0", "split": "unrelated", "sample": 0,
                                                 "scorer": "factor", "score": 1.0, "raw": "idiot", "judge": "rule"}])
    write_json(d / "diagnostics.json", {"grasp/spectral_gap": 7.0})
    write_json(d / "metrics" / "rule.json", {
        "task": "toy_rude", "model": "tiny", "method": "grasp", "variant": "grasp", "strength": 1.0, "seed": 0,
        "judge": "rule", "eval/spurious_rate": 1.0, "eval/spurious_rate_n": 1, "eval/spurious_rate_n_unscored": 0,
        "grasp/spectral_gap": 7.0})
    OmegaConf.save(cfg, d / "config.yaml", resolve=True)
    return d


def test_a_run_written_before_the_move_is_found_and_counted(tmp_path):
    cfg = compose_config(*TINY, "method=grasp", runs=tmp_path / "runs")
    d = write_pre_move_run(cfg)
    r = Run(cfg)
    outputs = {"train": d / "model", "generate": d / "generations.jsonl", "judge": d / "judgments" / "rule.jsonl",
               "metrics": d / "metrics" / "rule.json"}
    for name in slices(cfg):
        stage = r.stage(name)
        assert stage.output == outputs[name] and stage.is_done(), name
    stamps = {p: p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file() and p.name not in ("config.yaml", "env.json")}
    metrics = run(cfg)  # nothing is recomputed: no output or record changes
    assert metrics["eval/spurious_rate"] == 1.0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    df = collect(cfg.paths.runs)
    assert list(df["variant"]) == ["grasp"] and list(df["eval/spurious_rate"]) == [1.0]

    again = compose_config(*TINY, "method=grasp", "force=[metrics]", runs=tmp_path / "runs")
    recomputed = run(again)  # the metrics stage still reads the old diagnostics.json
    assert recomputed["grasp/spectral_gap"] == 7.0 and recomputed["train/final_loss"] == 2.5
    assert load_json(d / "stages" / "train.json")["config"]["method"]["_target_"] == "baselines.grasp.GRASP"
