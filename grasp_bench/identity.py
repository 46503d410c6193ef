"""A run's identity, in one place: which directory a run is, the config slice each stage is made with, when a
stage record counts for a config, and how records written by older versions are read (COMPATIBILITY).

    key = RunKey(cfg)              # a composed config; its config search path (`--config-dir`) comes with it
    key.dir                        # <paths.runs>/<task>/<model>/<method dir>/strength=<s>/seed=<k>
    key.slices()["generate"]       # the config slice behind each stage (it holds the slices before it)
    key.stage("train", output)     # a Stage: done, to run, or made with another config (one-line BadInput)

`pipeline.Run` runs the stages and asks its key; `grasp-bench-plan` and validation ask the same key (through the
run), so they cannot disagree about a directory or a stage.

<method dir> is the method's name, plus `,key=value` for every knob that differs from conf/method/<name>.yaml
(found on the config search path: the package's configs, then `--config-dir` and `hydra.searchpath` folders).

A stage's slice holds everything that decides its output: the config keys it reads and the content of every input
file it reads (`files`: path -> sha256): the training file and the task files a method reads (train), the
evaluation splits (generate), the scorers' word lists (judge). A task made by a `build` function is identified by
its recipe instead: a file under its `task.data_dir` is the build's output, named by its versioned folder and, when
the build stamps one, by BUILD.json's recipe digest (pinned upstream files: their manifest's sha256); a file outside
it (a user's own `task.train.path`) by its sha256. An edited input file reruns exactly what depends on it: a stage
made from the old content is made again, with one line naming the file, and so are the stages after it (their
slices hold the same digest); a stage whose config keys changed is refused instead (one line naming the key: the
same directory would hold another run), unless `force=[<stage>]`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import hydra.utils
from omegaconf import DictConfig

from grasp_bench import device, distributed
from grasp_bench.artifacts import BadInput, check_json, digest, file_sha256, load_json, write_json
from grasp_bench.data import function_at
from grasp_bench.layout import config_dirs, method_config, plain

STAGES = ("train", "generate", "judge", "metrics")
NOT_KNOBS = ("_target_", "name", "strength", "grid")  # method keys that are not knobs (they never name a directory)
# Train settings that decide whether a run may start, how much a kill costs (checkpoints) or how much memory a step
# holds (gradient checkpointing recomputes the same values: tests/test_checkpointing.py; FSDP sharding trains the
# adapter one process trains: tests/test_sharding.py), never what it computes: not part of a run's identity.
TRAIN_OPERATIONAL = frozenset({"allow_truncation", "checkpoint_every", "gradient_checkpointing", "sharding"})
MISSING = "<missing>"
INPUT_SUFFIXES = (".jsonl", ".json", ".txt", ".yaml", ".yml", ".csv")


# ---------------------------------------------------------------- the directory


def method_knobs(method_cfg: dict) -> dict:
    """The method parameters other than name/strength/grid/_target_."""
    return {k: v for k, v in method_cfg.items() if k not in NOT_KNOBS}


def method_defaults(name: str, dirs: list[Path] | None = None) -> dict:
    """The knobs of conf/method/<name>.yaml on the search path `dirs` ({} for a method whose config is not found)."""
    return method_knobs(method_config(name, dirs))


def method_dirname(method_cfg, dirs: list[Path] | None = None) -> str:
    """`<name>`, plus `,key=value` for every knob that differs from conf/method/<name>.yaml on `dirs` (default: the
    running Hydra app's search path; a composed config's own: `RunKey(cfg).method_dirname`)."""
    method = plain(method_cfg)
    defaults = method_defaults(method["name"], dirs)
    knobs = method_knobs(method)
    changed = [f"{k}={knobs[k]}".replace("/", "_").replace(" ", "") for k in sorted(knobs) if knobs[k] != defaults.get(k)]
    return ",".join([method["name"], *changed])


def run_dir(cfg: DictConfig) -> Path:
    """The run directory of a composed config (on its own config search path)."""
    strength = f"{float(cfg.method.strength):g}"
    return Path(cfg.paths.runs).expanduser() / cfg.task.name / cfg.model.name / method_dirname(
        cfg.method, config_dirs(cfg)) / f"strength={strength}" / f"seed={cfg.seed}"


# ---------------------------------------------------------------- what old records are read as


TRAIN_DEFAULTS = {"batching": "padded"}  # train keys added later, at the value runs recorded before them used
MODEL_DEFAULTS = {"quantization": "none"}  # model keys added later, likewise
DIAGNOSTICS_FILE = "diagnostics.json"  # where methods wrote diagnostics before they travelled on the RunContext


def _with_defaults(old: Any, defaults: Any) -> Any:
    """`old` plus the keys of `defaults` it lacks (recursively)."""
    if not (isinstance(old, dict) and isinstance(defaults, dict)):
        return old
    return {**defaults, **{k: _with_defaults(v, defaults.get(k)) for k, v in old.items()}}


def _train_defaults(old: dict, new: dict, method_defaults: dict) -> dict:
    return {**old, "train": _with_defaults(old["train"], TRAIN_DEFAULTS)} if "train" in old else old


def _model_defaults(old: dict, new: dict, method_defaults: dict) -> dict:
    return {**old, "model": _with_defaults(old["model"], MODEL_DEFAULTS)} if "model" in old else old


def _method_defaults(old: dict, new: dict, method_defaults: dict) -> dict:
    return {**old, "method": _with_defaults(old["method"], method_defaults)} if "method" in old else old


def _unrecorded_files(old: dict, new: dict, method_defaults: dict) -> dict:
    if "files" not in new:
        return old
    return {**old, "files": {**new["files"], **(old.get("files") or {})}}


def _no_class_path(s: dict) -> dict:
    if isinstance(s.get("method"), dict):
        s["method"].pop("_target_", None)
    return s


def _metric_fn_name(s: dict) -> dict:
    for spec in (s.get("metrics") or {}).values():
        if isinstance(spec, dict) and "fn" in spec:
            spec["fn"] = str(spec["fn"]).rsplit(".", 1)[-1]
    return s


def _judge_operational(s: dict) -> dict:
    if isinstance(s.get("judge"), dict) and s["judge"].get("_target_"):
        judge = function_at(s["judge"]["_target_"])  # a class that moved or went: compare everything
        operational = getattr(judge, "operational", frozenset())
        s["judge"] = {k: v for k, v in s["judge"].items() if k not in operational}
    return s


def _greedy_batch_size(s: dict) -> dict:
    if isinstance(s.get("generator"), dict) and float((s.get("sampling") or {}).get("temperature", 0)) == 0:
        s["generator"].pop("batch_size", None)
    return s


@dataclass(frozen=True)
class Rule:
    """How a record written by an older version is read. `reads`: what such a record is read as; `retire`: when the
    rule can go. `old(record, slice, method_defaults)` rewrites a stage record's config before it is compared;
    `both(slice)` applies to both sides (what is not part of a run); rules with neither are applied where the
    record is read (`where`)."""

    name: str
    reads: str
    retire: str
    old: Callable[[dict, dict, dict], dict] | None = None
    both: Callable[[dict], dict] | None = None
    where: str = "identity.differs"


COMPATIBILITY: tuple[Rule, ...] = (
    Rule("train_defaults", "a record without train.batching as made with batching=padded",
         "when no run recorded before b599a60 (2026-11-29) is kept", old=_train_defaults),
    Rule("model_defaults", "a record without model.quantization as made with an unquantised base (none)",
         "when no run recorded before model.quantization (2026-12-06) is kept", old=_model_defaults),
    Rule("method_defaults", "a record without a method knob as made with its conf/method YAML default (a knob added "
         "later defaults to the old behaviour)", "never: it is how a knob is added", old=_method_defaults),
    Rule("knobs_before", "a record without a knob the method lists in `knobs_before` (a corrected default) as made "
         "with that older value, so it no longer counts (an error naming the knob)",
         "an entry, when no run recorded before its knob is kept", where="RunKey.method_defaults"),
    Rule("file_digests", "a record without the sha256 of an input file (made before file digests, or before the "
         "file was read) as made from the file as it is now", "when no run recorded before file digests "
         "(branch identity, 2026-12-06) is kept; docs/ results are of built tasks, whose slices did not change",
         old=_unrecorded_files),
    Rule("method_class_path", "a method as its name and knobs, not its class's module path (`_target_` left out)",
         "never: a run is not renamed by moving code", both=_no_class_path),
    Rule("metric_fn_name", "a metric's row function by its last name part (`fn`), not its module",
         "when no run recorded before 4a59dac (2026-11-29, task code moved under grasp_bench.tasks) is kept",
         both=_metric_fn_name),
    Rule("judge_operational", "a judge without its operational settings (`Judge.operational`), also those of a "
         "record made before a setting became operational", "never: they do not change a score",
         both=_judge_operational),
    Rule("greedy_batch_size", "greedy generations without generator.batch_size (a batch only seeds sampling)",
         "never: greedy tokens do not depend on it", both=_greedy_batch_size),
    Rule("resolved_device", "`train.precision`/`batching: auto` as recorded resolved (bf16/fp32, padded/..), so a "
         "record from before `auto` counts where auto resolves to its value", "never: it is how auto is recorded",
         where="identity.slices"),
    Rule("world_size", "a record without `world_size` as one process (the key is in a slice only above 1)",
         "never: single-process records stay as they are", where="identity.slices"),
    Rule("diagnostics_file", f"a run's {DIAGNOSTICS_FILE} as diagnostics of its train stage",
         "when no run recorded before 4a59dac (2026-11-29) is kept", where="identity.diagnostics"),
    Rule("record_lines", "a stage record without `lines` as unchecked (its output's length is not compared)",
         "when no run recorded before ea4745b (2026-11-30) is kept", where="validate._finished_output"),
    Rule("report_metrics", "a run whose config.yaml lacks task.report_metrics as declaring the shipped task "
         "config's", "when no run recorded before 4a59dac (2026-11-29) is kept", where="report.report_metrics"),
)
# Method-owned caches keep their own reading rules (the core knows no method by name): GRASP keys a saved
# identification by `basis`/`space` only when they differ from what bases saved before those knobs used
# (baselines/grasp.py, GRASP.prepare).


def comparable(config_slice: dict) -> dict:
    """What a stage's config slice is compared by: the slice without what is not part of a run (the `both` rules)."""
    out = json.loads(json.dumps(config_slice, default=str))
    for rule in COMPATIBILITY:
        if rule.both:
            out = rule.both(out)
    return out


def _first_difference(old: Any, new: Any, prefix: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key, MISSING) != new.get(key, MISSING):
                return _first_difference(old.get(key, MISSING), new.get(key, MISSING), f"{prefix}{key}.")
    return f"{prefix.rstrip('.')}: {old!r} -> {new!r}"


class Difference(NamedTuple):
    """How a stage record differs from the current slice: the first difference (`key: old -> new`, or
    `<file>: content changed (old -> new)`), and whether input files' content is all that changed."""

    text: str
    inputs_only: bool


def differs(record: dict, config_slice: dict, method_defaults: dict | None = None) -> Difference | None:
    """None when a stage record's config counts for `config_slice`, else their first Difference. The record is read
    by the COMPATIBILITY rules."""
    old, new = json.loads(json.dumps(record, default=str)), json.loads(json.dumps(config_slice, default=str))
    for rule in COMPATIBILITY:
        if rule.old:
            old = rule.old(old, new, json.loads(json.dumps(method_defaults or {}, default=str)))
    old, new = comparable(old), comparable(new)
    old_files, new_files = old.pop("files", {}), new.pop("files", {})
    if old != new:  # a changed key first: a changed path changes its file's entry too
        return Difference(_first_difference(old, new), inputs_only=False)
    for path in sorted(set(old_files) | set(new_files)):
        if old_files.get(path) != new_files.get(path):
            was, now = old_files.get(path, MISSING), new_files.get(path, MISSING)
            return Difference(f"{path}: content changed ({was[:16]} -> {now[:16]})", inputs_only=True)
    return None


# ---------------------------------------------------------------- input files


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _is_file(value: str) -> bool:
    if "\n" in value or len(value) > 1024 or not ("/" in value or value.endswith(INPUT_SUFFIXES)):
        return False
    try:
        return Path(value).expanduser().is_file()
    except OSError:
        return False


def input_files(task: dict, *parts: Any) -> dict[str, str]:
    """The identity of every input file named in `parts` (values of the task's keys): path -> sha256, or, for a
    file a task's `build` wrote under its data_dir, data_dir -> its recipe digest (BUILD.json; nothing when the
    build stamps none: the versioned data_dir in the slice names it)."""
    data_dir = Path(str(task["data_dir"])).expanduser().resolve() if task.get("build") and task.get("data_dir") else None
    out = {}
    for value in _strings(list(parts)):
        if not _is_file(value):
            continue
        path = Path(value).expanduser().resolve()
        if data_dir is not None and path.is_relative_to(data_dir):
            stamp = data_dir / "BUILD.json"
            if stamp.is_file():
                out[str(task["data_dir"])] = f"recipe {load_json(stamp).get('digest')}"
        else:
            out[value] = file_sha256(path)
    return out


def _with_files(config_slice: dict, files: dict[str, str]) -> dict:
    if files:
        config_slice["files"] = files
    else:
        config_slice.pop("files", None)
    return config_slice


# ---------------------------------------------------------------- the slices


def slices(cfg: DictConfig, method_class: type | None = None) -> dict[str, dict]:
    """The config slice behind each stage: a stage's slice contains the slices of the stages before it."""
    method_class = method_class or hydra.utils.get_class(cfg.method._target_)
    task = plain(cfg.task)
    task_keys = ("name", "train", *getattr(method_class, "task_inputs", ()))
    method = {k: v for k, v in plain(cfg.method).items() if k != "grid"}  # the grid is sweep metadata
    recipe = {k: v for k, v in plain(cfg.train).items() if k not in TRAIN_OPERATIONAL}
    model = {k: v for k, v in plain(cfg.model).items() if k != "arch"}  # the plan's figures: path's, not identity
    train = {"task": {k: task.get(k) for k in task_keys}, "model": model,
             "method": method, "train": device.resolved_train(recipe), "seed": cfg.seed}
    if distributed.world_size() > 1:  # train.batch_size is per process: the global batch is world_size times it
        train["world_size"] = distributed.world_size()
    # an untrained run (the base model) reads no training file: editing it leaves the base run's evaluation as it is
    read = {k: v for k, v in train["task"].items() if k != "train" or method_class.starts_from != "untrained"}
    train_files = input_files(task, read)
    _with_files(train, train_files)
    splits = {k: {"path": v["path"], "limit": v.get("limit"), **{o: v[o] for o in ("samples", "system") if o in v}}
              for k, v in task["splits"].items()}
    generate = {**train, "generator": plain(cfg.generator), "splits": splits, "sampling": task["sampling"]}
    generate_files = {**train_files, **input_files(task, splits)}
    _with_files(generate, generate_files)
    operational = hydra.utils.get_class(cfg.judge._target_).operational  # declared by the judge (protocols.Judge)
    judge = {**generate, "judge": {k: v for k, v in plain(cfg.judge).items() if k not in operational},
             "scorers": {k: v["scorers"] for k, v in task["splits"].items()}}
    _with_files(judge, {**generate_files, **input_files(task, judge["scorers"])})
    metrics = {**judge, "metrics": task["metrics"]}
    return {"train": train, "generate": generate, "judge": judge, "metrics": metrics}


# ---------------------------------------------------------------- stage records


_SAID: set[str] = set()  # the notices of stages made again, printed once per process


class Stage:
    """One pipeline stage of one run: its output and the config slice that makes it. It is done when its output
    exists *and* `stages/<stage>.json` records a config that counts for the slice (`differs`). The output is
    renamed into place first and the record written second, so a kill between the two only costs a recomputation,
    never a half-written file taken for a finished one. `method_defaults`: the knob values a record without a knob
    is read with; the record always keeps the full slice. A stage made after `start()` records its wall time
    (`seconds`): what the run's stage cost, a column of the report's results.csv (`stage_seconds`)."""

    def __init__(self, run_dir: Path, name: str, output: Path, config_slice: dict, force: bool = False,
                 method_defaults: dict | None = None, later: tuple[str, ...] = ()):
        self.name, self.output, self.slice, self.force = name, output, config_slice, force
        self.method_defaults = method_defaults or {}
        self.record = run_dir / "stages" / f"{name}.json"
        self.later = [run_dir / "stages" / f"{s}.json" for s in later]  # the records of the stages that read this one
        self.started: float | None = None

    def is_done(self) -> bool:
        """True when finished with this config; False when not finished, or made from an input file whose content
        has changed since (it is made again: said once, on stderr); raises when finished with other config keys."""
        if self.force or not (self.output.exists() and self.record.exists()):
            return False
        record = check_json(self.record, f"delete it or rerun with 'force=[{self.name}]'")
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise BadInput(f"{self.record}: not a stage record; delete it or rerun with 'force=[{self.name}]'")
        difference = differs(record["config"], self.slice, self.method_defaults)
        if difference and difference.inputs_only:
            notice = f"{self.record.parent.parent}: stage '{self.name}' is made again: {difference.text}"
            if notice not in _SAID:
                _SAID.add(notice)
                print(f"[grasp-bench] {notice}", file=sys.stderr, flush=True)
            return False
        if difference:
            raise BadInput(
                f"{self.record.parent.parent}: stage '{self.name}' was made with another config ({difference.text}); "
                f"use another paths.runs, delete the run directory, or rerun with 'force=[{self.name}]'"
            )
        return True

    def start(self) -> None:
        """The stage's own work begins now (after waiting for locks, and after a reference run it needs was made)."""
        self.started = time.monotonic()

    def mark_done(self, **info: Any) -> None:
        """Records the stage as made with its config slice. The stages after it were made from its old output (a
        forced or retried stage): their records go, so that they are made again."""
        for record in self.later:
            record.unlink(missing_ok=True)
        if self.started is not None:
            info["seconds"] = round(time.monotonic() - self.started, 1)
        write_json(self.record, {"config": self.slice, "digest": digest(self.slice), **info})


TIMED = ("train", "generate", "judge")  # the stages whose wall time the report tables, as `seconds/<stage>`


def stage_seconds(run: Path) -> dict:
    """`seconds/<stage>` of each timed stage of a run: its record's wall time, None for a stage it did not make or
    made before records kept times."""
    out = {}
    for name in TIMED:
        record = run / "stages" / f"{name}.json"
        out[f"seconds/{name}"] = load_json(record).get("seconds") if record.exists() else None
    return out


def diagnostics(run: Path) -> dict:
    """A method's diagnostics ("<method>/..." values it put on ctx.diagnostics), as the stage records keep them
    (and as a run made before that wrote them: rule `diagnostics_file`)."""
    out = load_json(run / DIAGNOSTICS_FILE) if (run / DIAGNOSTICS_FILE).exists() else {}
    for name in ("train", "generate"):
        record = run / "stages" / f"{name}.json"
        if record.exists():
            out.update(load_json(record).get("diagnostics", {}))
    return out


# ---------------------------------------------------------------- the key


class RunKey:
    """A run's identity, from its composed config: its directory, each stage's slice and record. `method_class`:
    the method's class (default: the config's `_target_`)."""

    def __init__(self, cfg: DictConfig, method_class: type | None = None):
        self.cfg = cfg
        self.dirs = config_dirs(cfg)  # the config search path the config was composed on
        self.method_class = method_class or hydra.utils.get_class(cfg.method._target_)

    @property
    def method_dirname(self) -> str:
        return method_dirname(self.cfg.method, self.dirs)

    @property
    def dir(self) -> Path:
        return run_dir(self.cfg)

    def method_defaults(self) -> dict:
        """The knob values a record without a knob is read with: the YAML default, or the older behaviour the method
        names in `knobs_before` (rule `knobs_before`: such a record no longer counts)."""
        defaults = method_defaults(self.cfg.method.name, self.dirs)
        return defaults | {k: v for k, v in getattr(self.method_class, "knobs_before", {}).items() if k in defaults}

    def slices(self) -> dict[str, dict]:
        return slices(self.cfg, self.method_class)

    def stage(self, name: str, output: Path) -> Stage:
        """Stage `name`; forced (made again) when it or a stage before it is in `force`: a stage after a forced one
        reads its new output, so its record, made from the old one, is not compared."""
        forced = any(s in self.cfg.get("force", ()) for s in STAGES[:STAGES.index(name) + 1])
        return Stage(self.dir, name, output, self.slices()[name], force=forced, method_defaults=self.method_defaults(),
                     later=STAGES[STAGES.index(name) + 1:])
