"""Where things live: the package's config directory, the config search path of a composed config, and the layout
of a runs root. A leaf module (it imports nothing else of the project), so that every other module may ask it.

    <paths.runs>/<task>/<model>/<method dir>/strength=<s>/seed=<k>/     one run (its name: grasp_bench.identity)
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = Path(str(files("grasp_bench.conf")))  # the shipped Hydra configs (a real folder, installed or not)


def plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)


def config_dirs(cfg=None) -> list[Path]:
    """The package's config dir, then every file:// config source (`--config-dir`, `hydra.searchpath`) of the
    composed config `cfg` (its `hydra` node, as grasp_bench.jobs composes jobs for validation and
    grasp-bench-plan), or else of the running Hydra app, so that a method defined in a user's folder names its run
    directories the same way wherever it is asked."""
    sources = None
    hydra_node = cfg.get("hydra") if OmegaConf.is_config(cfg) else None
    if hydra_node is not None and OmegaConf.select(hydra_node, "runtime.config_sources") is not None:
        sources = OmegaConf.to_container(hydra_node.runtime.config_sources, resolve=False)
    else:
        try:
            from hydra.core.hydra_config import HydraConfig

            if HydraConfig.initialized():
                sources = [{"schema": s.schema, "path": s.path} for s in HydraConfig.get().runtime.config_sources]
        except (ImportError, ValueError):
            pass
    dirs = [CONF_DIR]
    for source in sources or []:
        if source["schema"] == "file" and Path(source["path"]) not in dirs:
            dirs.append(Path(source["path"]))
    return dirs


def method_config(name: str, dirs: list[Path] | None = None) -> dict:
    """conf/method/<name>.yaml, the first found in `dirs` (default: `config_dirs()`), as a dict ({} when none)."""
    for d in config_dirs() if dirs is None else dirs:
        path = d / "method" / f"{name}.yaml"
        if path.is_file():
            return OmegaConf.to_container(OmegaConf.load(path))
    return {}


def run_of_metrics(metrics_file: Path) -> Path:
    """The run directory owning `<run>/metrics/<judge>.json`."""
    return Path(metrics_file).parent.parent


def sibling_run(run: Path, method_dir: str, strength: float = 0.0) -> Path:
    """The run of another method (e.g. `base`) with the same task, model and seed as `run`."""
    return run.parent.parent.parent / method_dir / f"strength={strength:g}" / run.name
