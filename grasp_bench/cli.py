"""`grasp-bench`: the Hydra entry point.

    grasp-bench                                   # embedded comparison: base, naive SFT, GRASP on toy_rude
    grasp-bench sweep=none method=sft             # one run
    grasp-bench -m method=grasp method.strength=0,0.5,1 seed=0,1,2
    grasp-bench --help                            # config groups and options

Before Hydra starts, every command-line override is composed once per sweep value, so a typo in a key or
an option fails at once with one line on stderr and exit code 2. A user's own configs join through Hydra's
standard `--config-dir DIR` or `hydra.searchpath=[file://DIR]` (e.g. DIR/task/<name>.yaml for task=<name>).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from grasp_bench import layout
from grasp_bench.artifacts import BadInput

CONF_DIR = str(layout.CONF_DIR)


def _one_line(e: BaseException) -> str:
    while not str(e) and e.__cause__ is not None:  # Hydra sometimes wraps the informative error
        e = e.__cause__
    text = " ".join(str(e).split()) or type(e).__name__
    return text.replace(" Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.", "")


def _search_path(config_dir: str | None):
    """The config search path Hydra builds for `grasp-bench`: the package's configs, `--config-dir`, plugins."""
    import os

    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery

    search_path = create_config_search_path(f"file://{CONF_DIR}")
    if config_dir is not None:
        if not os.path.isdir(config_dir):
            raise BadInput(f"--config-dir {config_dir}: no such directory")
        search_path.prepend(provider="command-line", path=f"file://{os.path.abspath(config_dir)}",
                            anchor=SearchPathQuery(provider="schema"))
    return search_path


def validate_overrides(argv: list[str]) -> None:
    """Compose the config for each value of each sweep override (others at their first value), on the same
    search path Hydra will use (`--config-dir`, `hydra.searchpath=[...]`)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    if any(a in ("-h", "--help", "--hydra-help", "--shell-completion", "-sc") for a in argv):
        return
    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit:  # argparse has already printed its one-line usage error
        raise BadInput(f"cannot parse the command line: {' '.join(argv)}") from None
    if args.config_path is not None or args.info is not None or args.experimental_rerun is not None:
        return  # another primary config or an information command: Hydra checks it itself
    keep = [o for o in args.overrides if o.lstrip("+~").startswith("hydra.searchpath")]
    overrides = [o for o in args.overrides if not o.lstrip("+~").startswith("hydra")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as e:  # noqa: BLE001 - Hydra's parser raises several types, all user errors
        raise BadInput(_one_line(e)) from None
    values = []
    for o in parsed:
        if o.is_sweep_override():
            values.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            values.append([o.input_line])
    firsts = [v[0] for v in values]
    combos = [firsts] + [firsts[:i] + [v] + firsts[i + 1:] for i, vs in enumerate(values) for v in vs[1:]]
    loader = ConfigLoaderImpl(config_search_path=_search_path(args.config_dir))
    for combo in combos:
        try:
            loader.load_configuration(args.config_name or "config", [*combo, *keep], RunMode.RUN)
        except Exception as e:  # noqa: BLE001 - composition errors are user errors
            raise BadInput(_one_line(e)) from None


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
    from grasp_bench.layout import run_dir
    from grasp_bench.pipeline import run

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
        validate_overrides(sys.argv[1:])
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
