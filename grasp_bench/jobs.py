"""The jobs of a `grasp-bench` command line, composed as Hydra will compose them: the same primary config,
search path (the package's configs, `--config-dir`, `hydra.searchpath`) and sweeper. Used by the CLI (to validate
every job before the first starts) and by grasp-bench-plan; a job's Hydra launcher settings (`launcher_setting`:
the plan's GPU, the processes a run trains in, grasp_bench/distributed.py)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from grasp_bench.artifacts import BadInput
from grasp_bench.layout import CONF_DIR


def one_line(e: BaseException) -> str:
    while not str(e) and e.__cause__ is not None:  # Hydra sometimes wraps the informative error
        e = e.__cause__
    text = " ".join(str(e).split()) or type(e).__name__
    return text.replace(" Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.", "")


def search_path(config_dir: str | None):
    """The config search path Hydra builds for `grasp-bench`: the package's configs, `--config-dir`, plugins."""
    import os

    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery

    path = create_config_search_path(f"file://{CONF_DIR}")
    if config_dir is not None:
        if not os.path.isdir(config_dir):
            raise BadInput(f"--config-dir {config_dir}: no such directory")
        path.prepend(provider="command-line", path=f"file://{os.path.abspath(config_dir)}",
                     anchor=SearchPathQuery(provider="schema"))
    return path


def expand(overrides: list[str], multirun: bool = False, config_dir: str | None = None,
           config_name: str = "config") -> list[DictConfig]:
    """The composed config of every job `grasp-bench <overrides>` would run (with `-m`: `multirun`; with
    `--config-dir`: `config_dir`): the steps of Hydra's `Hydra.multirun` and `BasicSweeper.sweep` (hydra-core 1.3)
    up to launching, with the configured sweeper. Each keeps its `hydra` node (`hydra.overrides.task`: the job's)."""
    from hydra._internal.hydra import Hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.plugins import Plugins
    from hydra.core.utils import setup_globals
    from hydra.types import HydraContext, RunMode

    setup_globals()  # the resolvers Hydra registers before composing (now, hydra)
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name="grasp-bench", config_search_path=search_path(config_dir))
    try:
        if not multirun and hydra.get_mode(config_name, overrides) != RunMode.MULTIRUN:
            return [hydra.compose_config(config_name, overrides, run_mode=RunMode.RUN, with_log_configuration=False)]
        cfg = hydra.compose_config(config_name, overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False)
        context = HydraContext(config_loader=hydra.config_loader, callbacks=None)
        sweeper = Plugins.instance().instantiate_sweeper(config=cfg, hydra_context=context, task_function=lambda c: None)
        arguments = sweeper._parse_config() + list(OmegaConf.to_container(cfg.hydra.overrides.task, resolve=False))
        parsed = OverridesParser.create(config_loader=hydra.config_loader).parse_overrides(arguments)
        return [hydra.config_loader.load_sweep_config(cfg, list(job))
                for batch in sweeper.split_arguments(parsed, None) for job in batch]
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - composition errors are user errors
        raise BadInput(one_line(e)) from None
    finally:
        GlobalHydra.instance().clear()


def typed_overrides(jobs: list[DictConfig]) -> list[list[str]]:
    """Each job's command-line overrides as typed (an interpolation such as ${hydra:runtime.cwd} left as it is)."""
    return [OmegaConf.to_container(job.hydra.overrides.task, resolve=False) for job in jobs]


def job_error(i: int, named: list[list[str]], e: BadInput) -> BadInput:
    """Job i's error, named by the overrides that set it apart from the other jobs (when there are several)."""
    if len(named) == 1:
        return e
    swept = " ".join(o for o in named[i] if any(o not in other for other in named))
    return BadInput(f"job {i} ({swept}): {e}")


def launcher_setting(cfg: DictConfig, key: str):
    """A setting of the job's Hydra launcher (e.g. a SLURM profile's `constraint`): from the composed config, or
    from the Hydra config of the job being validated or run; None where there is none."""
    value = OmegaConf.select(cfg, f"hydra.launcher.{key}", default=None)
    if value is None:
        from hydra.core.hydra_config import HydraConfig

        try:
            value = OmegaConf.select(HydraConfig.get(), f"launcher.{key}", default=None)
        except ValueError:  # no Hydra config set: not inside a Hydra job
            return None
    return value
