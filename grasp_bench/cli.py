"""`grasp-bench`: the Hydra entry point.

    grasp-bench                                   # embedded comparison: base, naive SFT, GRASP on toy_rude
    grasp-bench sweep=none method=sft             # one run
    grasp-bench -m method=grasp method.strength=0,0.5,1 seed=0,1,2
    grasp-bench --help                            # config groups and options

Before Hydra starts, every command-line override is composed once per sweep value, so a typo in a key or
an option fails at once with one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
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


def validate_overrides(argv: list[str]) -> None:
    """Compose the config for each value of each sweep override (others at their first value)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(a in ("-h", "--help", "--hydra-help", "--shell-completion", "-sc") for a in argv):
        return
    overrides, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in HYDRA_FLAGS_WITH_VALUE:
            skip = True
        elif not a.startswith("-") and not a.lstrip("+~").startswith("hydra"):
            overrides.append(a)
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
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for combo in combos:
            try:
                compose("config", overrides=combo)
            except Exception as e:  # noqa: BLE001 - composition errors are user errors
                raise BadInput(_one_line(e)) from None


class ReportCallback(Callback):
    """Aggregates every metrics file under paths.runs when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from grasp_bench.report import aggregate

        aggregate(config.paths.runs)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from grasp_bench.pipeline import run, run_dir

    try:
        metrics = run(cfg)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    shown = [f"{k}={metrics[k]:.3f} (n={metrics[k + '_n']})" for k in metrics if k.startswith("eval/") and k + "_n" in metrics]
    print(f"[grasp-bench] {run_dir(cfg)}: " + ", ".join(shown), flush=True)


def main() -> None:
    try:
        validate_overrides(sys.argv[1:])
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
