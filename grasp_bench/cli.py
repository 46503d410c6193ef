"""`grasp-bench`: the Hydra entry point.

    grasp-bench                                   # embedded comparison: base, naive SFT, GRASP on toy_rude
    grasp-bench sweep=none method=sft             # one run
    grasp-bench -m method=grasp method.strength=0,0.5,1 seed=0,1,2
    grasp-bench --help                            # config groups and options

Before Hydra starts, the config of every job is composed and validated (grasp_bench.validate), so a typo in a
key, a value out of range or a bad input file fails at once with one line on stderr, exit code 2, and nothing
written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
import hydra.utils
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from grasp_bench.artifacts import BadInput

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
HYDRA_FLAGS_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun",
                          "--package", "-p", "--info", "-i", "--cfg", "-c"}


def _one_line(e: BaseException) -> str:
    while not str(e) and e.__cause__ is not None:  # Hydra sometimes wraps the informative error
        e = e.__cause__
    text = " ".join(str(e).split()) or type(e).__name__
    return text.replace(" Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.", "")


def job_overrides(argv: list[str]) -> list[list[str]]:
    """The override list of every job the command will run, as Hydra's sweeper will make them: the sweep
    config's `hydra.sweeper.params` plus the command line, their product, then the sweeper's own expansion
    (`method_grid`: each method over its grid). One job, the command line, when not a multirun."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    overrides, hydra_overrides, skip = [], [], False
    for a in argv:
        if skip:
            skip = False
        elif a in HYDRA_FLAGS_WITH_VALUE:
            skip = True
        elif not a.startswith("-"):
            (hydra_overrides if a.lstrip("+~").startswith("hydra") else overrides).append(a)
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    parsed = parser.parse_overrides(overrides)
    firsts = [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override()
              else o.input_line for o in parsed]
    hydra_cfg = compose("config", overrides=firsts + hydra_overrides, return_hydra_config=True).hydra
    if not ({"-m", "--multirun"} & set(argv) or hydra_cfg.mode == RunMode.MULTIRUN):
        return [overrides]
    params = [f"{k}={v}" for k, v in (hydra_cfg.sweeper.get("params") or {}).items()]
    jobs = BasicSweeper.split_arguments(parser.parse_overrides(params + overrides), None)[0]
    expand = getattr(hydra.utils.get_class(hydra_cfg.sweeper._target_), "expand", None)
    if expand is not None:
        jobs = expand(jobs, lambda job: list(compose("config", overrides=job).method.get("grid") or []))
    return jobs


def validate_jobs(argv: list[str]) -> None:
    """Compose and validate (grasp_bench.validate) the config of every job, before Hydra starts the first."""
    from hydra import compose, initialize_config_dir

    from grasp_bench.validate import validate

    if any(a in ("-h", "--help", "--hydra-help", "--shell-completion", "-sc", "--info", "-i", "--cfg", "-c")
           for a in argv):
        return
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        try:
            jobs = job_overrides(argv)
        except Exception as e:  # noqa: BLE001 - Hydra's parser and composition raise several types, all user errors
            raise BadInput(_one_line(e)) from None
        for i, job in enumerate(jobs):
            try:
                cfg = compose("config", overrides=job)
            except Exception as e:  # noqa: BLE001 - composition errors are user errors
                raise BadInput(_one_line(e)) from None
            try:
                validate(cfg)
            except BadInput as e:
                swept = " ".join(o for o in job if any(o not in other for other in jobs))  # what names this job
                raise BadInput(f"job {i} ({swept}): {e}" if len(jobs) > 1 else str(e)) from None


JOB_ERROR = "job_error.txt"  # in a failed multirun job's Hydra output dir


class ReportCallback(Callback):
    """Aggregates every metrics file under paths.runs when a multirun ends, then fails if any job failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from grasp_bench.distributed import is_main
        from grasp_bench.report import aggregate

        if not is_main():
            return
        aggregate(config.paths.runs, logger_cfg=config.get("logger"))
        failed = sorted(Path(config.hydra.sweep.dir).glob(f"**/{JOB_ERROR}"))
        if failed:
            first = failed[0].read_text(encoding="utf-8").splitlines()[0]
            print(f"error: {len(failed)} job(s) failed, the others' results are kept; first: {first} "
                  f"(tracebacks: {', '.join(str(p) for p in failed)})", file=sys.stderr)
            sys.exit(1)


def _record_failed_job(e: BaseException) -> None:
    """A multirun job failed: keep its traceback and let the launcher go on with the other jobs."""
    import traceback

    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    overrides = " ".join(hc.overrides.task)
    reason = _one_line(e) if isinstance(e, BadInput) else f"{type(e).__name__}: {_one_line(e)}"
    text = f"job {hc.job.num} ({overrides}): {reason}\n\n" + "".join(traceback.format_exception(e))
    Path(hc.runtime.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(hc.runtime.output_dir) / JOB_ERROR).write_text(text, encoding="utf-8")
    print(f"error: job {hc.job.num} ({overrides}) failed: {reason}", file=sys.stderr, flush=True)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from grasp_bench.distributed import adopt_submitit_tasks, is_main
    from grasp_bench.pipeline import run, run_dir

    adopt_submitit_tasks()
    try:
        metrics = run(cfg)
        if is_main():  # other ranks of a multi-process run only train
            shown = [f"{k}={v:.3f} (n={metrics[k + '_n']})" for k, v in metrics.items()
                     if k.startswith("eval/") and k + "_n" in metrics]
            print(f"[grasp-bench] {run_dir(cfg)}: " + ", ".join(shown), flush=True)
    except Exception as e:  # noqa: BLE001 - in a multirun every failure is recorded, then reported at the end
        if _in_multirun():
            _record_failed_job(e)
            return
        if isinstance(e, BadInput):
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        raise


def main() -> None:
    try:
        validate_jobs(sys.argv[1:])
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
