"""Where things live: the package's config directory and the layout of a runs root. A leaf module (it imports
nothing else of the project), so that every other module may ask it.

    <paths.runs>/<task>/<model>/<method dir>/strength=<s>/seed=<k>/     one run
    <method dir> = <name>, plus `,key=value` for every knob that differs from conf/method/<name>.yaml
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = Path(str(files("grasp_bench.conf")))  # the shipped Hydra configs (a real folder, installed or not)
NOT_KNOBS = ("_target_", "name", "strength", "grid")


def plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)


def config_dirs() -> list[Path]:
    """The package's config dir, then every file:// config source of the running Hydra app (`--config-dir`,
    `hydra.searchpath`), so that a method defined in a user's folder names its run directories the same way."""
    dirs = [CONF_DIR]
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            for source in HydraConfig.get().runtime.config_sources:
                if source.schema == "file" and Path(source.path) not in dirs:
                    dirs.append(Path(source.path))
    except (ImportError, ValueError):
        pass
    return dirs


def method_knobs(method_cfg: Mapping) -> dict:
    """The method parameters other than name/strength/grid/_target_ (they name the run directory)."""
    return {k: v for k, v in method_cfg.items() if k not in NOT_KNOBS}


def method_defaults(name: str) -> dict:
    """The knobs of conf/method/<name>.yaml ({} for a method whose config is not found)."""
    for d in config_dirs():
        path = d / "method" / f"{name}.yaml"
        if path.is_file():
            return method_knobs(OmegaConf.to_container(OmegaConf.load(path)))
    return {}


def method_dirname(method_cfg) -> str:
    """`<name>`, plus `,key=value` for every knob that differs from conf/method/<name>.yaml."""
    method = plain(method_cfg)
    defaults = method_defaults(method["name"])
    knobs = method_knobs(method)
    changed = [f"{k}={knobs[k]}".replace("/", "_").replace(" ", "") for k in sorted(knobs) if knobs[k] != defaults.get(k)]
    return ",".join([method["name"], *changed])


def run_dir(cfg) -> Path:
    strength = f"{float(cfg.method.strength):g}"
    return Path(cfg.paths.runs).expanduser() / cfg.task.name / cfg.model.name / method_dirname(cfg.method) / (
        f"strength={strength}") / f"seed={cfg.seed}"


def run_of_metrics(metrics_file: Path) -> Path:
    """The run directory owning `<run>/metrics/<judge>.json`."""
    return Path(metrics_file).parent.parent


def sibling_run(run: Path, method_dir: str, strength: float = 0.0) -> Path:
    """The run of another method (e.g. `base`) with the same task, model and seed as `run`."""
    return run.parent.parent.parent / method_dir / f"strength={strength:g}" / run.name
