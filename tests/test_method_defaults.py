"""One source of method defaults: conf/method/<name>.yaml. Building a method in Python gives the same variant as
`method=<name>`, no knob has its default in Python (the base class's strength and grid agree with the YAML), and a
knob whose default is a corrected behaviour never lets a run recorded before it pass as made with it."""

from __future__ import annotations

import inspect
import json

import hydra.utils
import pytest
from omegaconf import OmegaConf

from grasp_bench.artifacts import BadInput, load_json
from grasp_bench.method import configured
from grasp_bench.pipeline import Run, method_dirname, run
from tests.conftest import CONF, compose_config, tiny_method

METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", METHODS)
def test_python_build_is_the_yaml_variant(name):
    node = compose_config(f"method={name}").method
    from_yaml = hydra.utils.instantiate(node, _convert_="all")
    in_python = hydra.utils.get_class(node._target_)(name=name)
    assert type(in_python) is type(from_yaml)
    assert vars(in_python) == vars(from_yaml)
    assert vars(in_python) != {}


@pytest.mark.parametrize("name", METHODS)
def test_no_knob_has_a_python_default_but_the_base_class_own(name):
    yaml = OmegaConf.to_container(OmegaConf.load(CONF / "method" / f"{name}.yaml"))
    signature = inspect.signature(hydra.utils.get_class(yaml["_target_"]).__init__)
    python = {k: p.default for k, p in signature.parameters.items()
              if k != "name" and p.default is not inspect.Parameter.empty}
    assert set(python) <= {"strength", "grid"}, f"{name}: knob defaults in Python {sorted(python)}: they belong in the YAML"
    for key in set(python) & set(yaml):
        assert _plain(python[key]) == yaml[key], f"{name}: Python says {key}={python[key]!r}, YAML {yaml[key]!r}"


def test_configured_reads_the_yaml_and_refuses_unknown_knobs():
    assert configured("caft", {"n_select": 3})["n_select"] == 3
    assert configured("caft", {})["selection"] == OmegaConf.load(CONF / "method" / "caft.yaml").selection
    with pytest.raises(BadInput, match="method.n_selected: not a knob of method 'caft'"):
        configured("caft", {"n_selected": 3})


def test_a_run_recorded_before_a_corrected_default_does_not_pass_as_one(tmp_path):
    cfg = compose_config(*tiny_method("restore"), "model=tiny", "sweep=none", "stages=[train]",
                         "train.max_steps=1", "task.train.limit=8", runs=tmp_path / "runs")
    run(cfg)
    r = Run(cfg)
    assert method_dirname(cfg.method).startswith("restore,")  # only the tests' shrunk knobs name it
    record = r.dir / "stages" / "train.json"
    old = load_json(record)
    del old["config"]["method"]["warmup"]  # as recorded before the knob existed: a check after every step
    record.write_text(json.dumps(old))
    with pytest.raises(BadInput, match="method.warmup: 'check after every step' -> 1"):
        run(cfg)
