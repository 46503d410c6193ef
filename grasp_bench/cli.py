"""`grasp-bench`: the Hydra entry point.

    grasp-bench                                   # embedded comparison: base, naive SFT, GRASP on toy_rude
    grasp-bench sweep=none method=sft             # one run
    grasp-bench -m method=grasp method.strength=0,0.5,1 seed=0,1,2
    grasp-bench --help                            # config groups and options

Before Hydra starts, the config of every job is composed and validated (grasp_bench.validate), so a typo in a
key, a value out of range or a bad input file fails at once with one line on stderr, exit code 2, and nothing
written. A user's own configs join through Hydra's standard `--config-dir DIR` or `hydra.searchpath=[file://DIR]`
(e.g. DIR/task/<name>.yaml for task=<name>); they are composed and validated on that same search path.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from grasp_bench import layout
from grasp_bench.artifacts import BadInput
from grasp_bench.jobs import one_line

CONF_DIR = str(layout.CONF_DIR)


def validate_jobs(argv: list[str]) -> None:
    """Compose the config of every job the command line will run, as Hydra will (the same primary config, search
    path and sweeper: grasp_bench.jobs.expand), and validate each (grasp_bench.validate) with its Hydra config
    current, as in the job itself, before Hydra starts the first."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from grasp_bench.jobs import expand, job_error, typed_overrides
    from grasp_bench.pipeline import validate

    if any(a in ("-h", "--help", "--hydra-help", "--shell-completion", "-sc") for a in argv):
        return
    parser = get_args_parser()

    def refuse(message: str):  # instead of argparse's usage page and exit code
        stray = message.startswith("unrecognized arguments: ") and not message.split(": ", 1)[1].startswith("-")
        hint = "; options (-m, --config-dir ...) go before the overrides" if stray else ""
        raise BadInput(f"cannot parse the command line: {message}{hint}")

    parser.error = refuse
    args = parser.parse_args(argv)
    if args.config_path is not None or args.info is not None or args.experimental_rerun is not None or args.cfg:
        return  # another primary config or an information command: Hydra checks it itself
    try:
        configs = expand(args.overrides, multirun=args.multirun, config_dir=args.config_dir,
                         config_name=args.config_name or "config")
    except BadInput as e:
        raise not_a_key(e, args) or e from None
    named = typed_overrides(configs)
    from grasp_bench.tracking import wandb_mode_notice

    notice = wandb_mode_notice(str(OmegaConf.select(configs[0], "logger.name", default="none")),
                               OmegaConf.select(configs[0], "logger.mode", default=None))
    if notice:
        print(notice, file=sys.stderr)
    for i, cfg in enumerate(configs):
        HydraConfig.instance().set_config(cfg)
        try:
            with open_dict(cfg):
                del cfg["hydra"]
            validate(cfg)
        except BadInput as e:
            raise job_error(i, named, e) from None
        finally:
            HydraConfig.instance().cfg = None


def not_a_key(e: BadInput, args) -> BadInput | None:
    """Hydra's "Could not override 'method.lamda_max'. To append to your config use +method.lamda_max=2" for a key
    the config does not have: that advice is the wrong fix for a typo, so say which keys the group has instead
    (composed without the bad override). None when `e` is another error."""
    from omegaconf import DictConfig, OmegaConf

    from grasp_bench.jobs import expand
    from grasp_bench.layout import method_knobs
    from grasp_bench.method import unknown_knob

    found = re.match(r"Could not override '([\w.]+)'\. To append", str(e))
    if found is None or "." not in found[1]:
        return None
    key = found[1]
    group, leaf = key.rsplit(".", 1)
    rest = [o for o in args.overrides if o.split("=", 1)[0] != key]
    try:
        node = OmegaConf.select(expand(rest, multirun=args.multirun, config_dir=args.config_dir,
                                       config_name=args.config_name or "config")[0], group)
    except BadInput:
        return None
    if not isinstance(node, DictConfig):
        return None
    if group == "method":
        return unknown_knob(node.get("name", "?"), leaf, method_knobs(node))
    return BadInput(f"{key}: not a key of {group} (its keys: {', '.join(str(k) for k in node)})")


JOB_ERROR = "job_error.txt"  # in a failed multirun job's Hydra output dir


class ReportCallback(Callback):
    """Aggregates every metrics file under paths.runs when a multirun ends, then fails if any job failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from grasp_bench.distributed import is_main
        from grasp_bench.report import aggregate

        if not is_main():
            return
        if "metrics" not in config.stages:  # e.g. stages=[train]: no run has metrics to report
            return
        try:
            aggregate(config.paths.runs, logger_cfg=config.get("logger"))
            damaged = None
        except BadInput as e:  # a damaged file under paths.runs: every job's results are kept, the table is not made
            damaged = e
        failed = sorted(Path(config.hydra.sweep.dir).glob(f"**/{JOB_ERROR}"))
        if failed:
            first = failed[0].read_text(encoding="utf-8").splitlines()[0]
            print(f"error: {len(failed)} job(s) failed, the others' results are kept; first: {first} "
                  f"(tracebacks: {', '.join(str(p) for p in failed)})", file=sys.stderr)
        if damaged is not None:
            print(f"error: the report: {one_line(damaged)}", file=sys.stderr)
            sys.exit(2)
        if failed:
            sys.exit(1)


def _record_failed_job(e: BaseException) -> None:
    """A multirun job failed: keep its traceback and let the launcher go on with the other jobs."""
    import traceback

    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    overrides = " ".join(hc.overrides.task)
    reason = one_line(e) if isinstance(e, BadInput) else f"{type(e).__name__}: {one_line(e)}"
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
    from grasp_bench.identity import run_dir
    from grasp_bench.pipeline import run

    adopt_submitit_tasks()
    try:
        metrics = run(cfg)
        if is_main():  # other ranks of a multi-process run only train
            print(f"[grasp-bench] {run_dir(cfg)}: {summary_line(metrics)}", flush=True)
    except Exception as e:  # noqa: BLE001 - in a multirun every failure is recorded, then reported at the end
        if _in_multirun():
            _record_failed_job(e)
            return
        if isinstance(e, BadInput):
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        raise


def summary_line(metrics: dict) -> str:
    """Each eval metric with its rows, and how many of them went unscored or were excluded when any were."""
    shown = []
    for key, value in metrics.items():
        if key.startswith("eval/") and key + "_n" in metrics:
            left_out = [f"{k} {w}" for w in ("unscored", "excluded") if (k := metrics.get(f"{key}_n_{w}") or 0)]
            shown.append(f"{key}={value:.3f} (n={metrics[key + '_n']}" + "".join(f", {x}" for x in left_out) + ")")
    return ", ".join(shown)


def main() -> None:
    from grasp_bench.tracking import quiet_transformers_import

    quiet_transformers_import()
    try:
        validate_jobs(sys.argv[1:])
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
