"""One validation pass before the first training step: the composed config and every input a run will read.

`pipeline.validate(cfg)` checks, through `check_inputs` and `check_run` here, loading no model and writing
nothing under `paths.runs`:
- the core's knobs against typed ranges or choices (seed, stages, force, train.*, task limits, sampling, role and kind,
  model.dtype and lora), no unknown train key, and the keys every task config has (a user's task folder);
- the method, generator and judge configs (each plugin checks its own knobs when it is built, and may define
  `check(...)` for what only matters when its stage runs: the judge's scorers and API key, vLLM's interpreter);
- the runs root and cache (directories we can write), the model path (no download);
- the run directory's stage records: damaged or made with another config is an error before anything runs;
- the task keys the method reads (`Method.task_needs`: a persona block, prompt files, which must share no prompt
  with an evaluated row), then every file the remaining stages read: the training file, each evaluation split,
  word lists, and a finished stage's output that the next stage reads (a truncated `generations.jsonl`).
Every failure is one BadInput naming the key or file:line. The CLI runs it for every job of a sweep before
Hydra starts the first; `pipeline.run` runs it again (cheap: file checks are remembered per file version).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from transformers.trainer_utils import SchedulerType
from transformers.training_args import OptimizerNames

from grasp_bench import device, distributed, layout, models
from grasp_bench.artifacts import BadInput, check_json, digest, file_version, read_jsonl
from grasp_bench.data import build_task_files, function_at, load_eval, load_rows, load_train
from grasp_bench.verdict import KINDS, ROLES

TRAIN_KEYS = tuple(OmegaConf.load(layout.CONF_DIR / "config.yaml").train)  # the one recipe's settings
_seen: dict[tuple, Any] = {}  # checks already passed, keyed by what they read (a file's size and mtime included)


def _once(key: tuple, check: Callable[[], Any]) -> Any:
    if key not in _seen:
        _seen[key] = check()
    return _seen[key]


def _get(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except Exception as e:  # noqa: BLE001 - a missing value or a failed interpolation
        raise BadInput(f"{key}: {' '.join(str(e).split()[:30])}") from None


def number(cfg: DictConfig, key: str, *, integer: bool = False, low: float | None = None, low_open: bool = False,
           high: float | None = None, null: bool = False, also: tuple = ()) -> None:
    """`key` is a number (an integer when `integer`) in [low, high] ((low, high] when `low_open`), or one of `also`,
    or null when `null`."""
    value = _get(cfg, key)
    if value is None and null:
        return
    if value in also and not isinstance(value, bool):
        return
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        rng = []
        if low is not None:
            rng.append(f"{'>' if low_open else '>='} {low}")
        if high is not None:
            rng.append(f"<= {high}")
        what = ("an integer" if integer else "a number") + (" " + " and ".join(rng) if rng else "")
        what += "".join(f" or {a}" for a in also) + (" or null" if null else "")
        raise BadInput(f"{key}={value!r}: expected {what}")


def choice(cfg: DictConfig, key: str, allowed: tuple) -> None:
    """`key` is one of `allowed` (a bool only where `allowed` holds bools)."""
    value = _get(cfg, key)
    if not any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in allowed):
        shown = ", ".join(str(a).lower() if isinstance(a, bool) else a for a in allowed)
        raise BadInput(f"{key}={value!r}: expected one of {shown}")


def names(cfg: DictConfig, key: str, known: tuple[str, ...]) -> None:
    value = _get(cfg, key)
    if not isinstance(value, (list, ListConfig)) or any(v not in known for v in value):
        raise BadInput(f"{key}={OmegaConf.to_container(value) if isinstance(value, ListConfig) else value!r}: "
                       f"expected a list of {', '.join(known)}")


def mapping(cfg: DictConfig, key: str, *, within: str | None = None) -> DictConfig:
    """`key` is a mapping (`within`: the file or entry it belongs to, for the message)."""
    value = _get(cfg, key)
    if not isinstance(value, DictConfig):
        raise BadInput(f"{key}: {'missing' if value is None else 'expected a mapping, got ' + repr(value)}"
                       + (f" ({within})" if within else ""))
    return value


def task_shape(cfg: DictConfig) -> None:
    """The keys every task config has (conf/task/toy_rude.yaml is the example): a task from a user's folder that
    lacks one is refused naming it, before anything reads it."""
    where = f"task '{_get(cfg, 'task.name')}'"
    if not isinstance(_get(cfg, "task.name"), str):
        raise BadInput("task.name: missing (every task config sets its name)")
    for key in ("task.train", "task.sampling", "task.metrics"):
        mapping(cfg, key, within=where)
    if not isinstance(_get(cfg, "task.train.path"), str):
        raise BadInput(f"task.train.path: missing ({where})")
    if not mapping(cfg, "task.splits", within=where):
        raise BadInput(f"task.splits: empty ({where})")
    for split in _get(cfg, "task.splits"):
        mapping(cfg, f"task.splits.{split}", within=where)
        if not isinstance(_get(cfg, f"task.splits.{split}.path"), str):
            raise BadInput(f"task.splits.{split}.path: missing ({where})")
        mapping(cfg, f"task.splits.{split}.scorers", within=where)
    for metric in _get(cfg, "task.metrics"):
        mapping(cfg, f"task.metrics.{metric}", within=where)
    if _get(cfg, "task.role") is not None:  # which organisms a verdict may rank on (docs/organisms.md)
        choice(cfg, "task.role", ROLES)
    if _get(cfg, "task.kind") is not None:  # how the verdict groups organisms side by side (docs/organisms.md)
        choice(cfg, "task.kind", KINDS)


def check_config(cfg: DictConfig, stages: tuple[str, ...]) -> None:
    """The core's knobs; a method's, generator's and judge's own knobs are checked by the plugin."""
    number(cfg, "seed", integer=True, low=0, high=2**32 - 1)
    for group, known in (("train", TRAIN_KEYS), ("model", models.MODEL_KEYS), ("model.lora", models.LORA_KEYS)):
        unknown = sorted(set(mapping(cfg, group)) - set(known))
        if unknown:
            raise BadInput(f"{group}.{unknown[0]}: not a key of {group} (known: {', '.join(known)})")
    task_shape(cfg)
    names(cfg, "stages", stages)
    names(cfg, "force", stages)
    number(cfg, "train.epochs", low=0, low_open=True)
    number(cfg, "train.max_steps", integer=True, low=1, also=(-1,))
    for key in ("train.batch_size", "train.grad_accum", "train.max_length"):
        number(cfg, key, integer=True, low=1)
    number(cfg, "train.lr", low=0, low_open=True)
    number(cfg, "train.warmup_steps", integer=True, low=0)
    number(cfg, "train.weight_decay", low=0)
    number(cfg, "train.max_grad_norm", low=0)
    number(cfg, "train.checkpoint_every", low=0, null=True)
    choice(cfg, "train.precision", ("auto", "bf16", "fp32"))
    choice(cfg, "train.batching", device.BATCHING)
    choice(cfg, "train.scheduler", tuple(s.value for s in SchedulerType))
    choice(cfg, "train.optim", tuple(o.value for o in OptimizerNames))
    from grasp_bench.train import effective_optim  # the Trainer's import, which the run makes next anyway

    effective_optim(cfg.train.optim)  # an 8-bit optimizer on CUDA needs bitsandbytes
    choice(cfg, "model.dtype", tuple(models.DTYPES))
    models.check_quantization(cfg.model)  # before anything loads: bitsandbytes needs CUDA
    choice(cfg, "train.sharding", distributed.SHARDINGS)
    distributed.check_launch(cfg)  # sharding this launch cannot do, refused
    choice(cfg, "train.allow_truncation", (False, True))
    choice(cfg, "train.gradient_checkpointing", (False, True))
    number(cfg, "task.train.limit", integer=True, low=0, null=True)
    for split in _get(cfg, "task.splits") or {}:
        number(cfg, f"task.splits.{split}.limit", integer=True, low=0, null=True)
        number(cfg, f"task.splits.{split}.samples", integer=True, low=1, null=True)
    number(cfg, "task.sampling.temperature", low=0)
    number(cfg, "task.sampling.top_p", low=0, low_open=True, high=1)
    number(cfg, "task.sampling.max_new_tokens", integer=True, low=1)
    number(cfg, "task.sampling.samples", integer=True, low=1)
    choice(cfg, "task.sampling.from_generation_config", (False, True, None))  # None: not set (false)
    number(cfg, "model.lora.r", integer=True, low=1)
    number(cfg, "model.lora.alpha", low=0, low_open=True)
    number(cfg, "model.lora.dropout", low=0, high=1)


def writable_dir(key: str, value: Any) -> None:
    """`value` is a directory we can write, or can be created as one (nothing is left behind)."""
    path = Path(str(value)).expanduser()
    if path.exists() and not path.is_dir():
        raise BadInput(f"{key} '{value}': exists and is not a directory")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BadInput(f"{key} '{value}': '{parent}' is a file, so the directory cannot be made")
    try:  # os.access alone says yes to root on read-only mounts
        os.rmdir(tempfile.mkdtemp(prefix=".grasp-bench-probe.", dir=parent))
    except OSError as e:
        raise BadInput(f"{key} '{value}': not writable ({parent}: {e.strerror})") from None


def _exists(key: str, path: Any) -> None:
    if not Path(str(path)).expanduser().is_file():
        raise BadInput(f"{key}={path}: file not found")


def _training_file(task: DictConfig) -> None:
    _exists("task.train.path", task.train.path)

    def check() -> None:
        if not load_train(task):
            limit = task.train.get("limit")
            raise BadInput(f"{task.train.path}: no training rows" + (f" (task.train.limit={limit})" if limit == 0 else ""))

    _once(("train", *file_version(task.train.path), task.train.get("limit")), check)


def _eval_files(task: DictConfig) -> None:
    for split, spec in task.splits.items():
        _exists(f"task.splits.{split}.path", spec.path)
    key = tuple((s, *file_version(spec.path), spec.get("limit")) for s, spec in task.splits.items())
    _once(("eval", key), lambda: load_eval(task) and None)


def _prompt(row: dict) -> tuple:
    """A row's conversation up to the reply, without system messages: what a prompt file and a split compare by."""
    msgs = [(m["role"], m["content"]) for m in row["messages"] if m["role"] != "system"]
    return tuple(msgs[:-1] if msgs and msgs[-1][0] == "assistant" else msgs)


def _disjoint_from_splits(key: str, path: str, task: DictConfig) -> None:
    """A method's prompt file (generic_prompts, factor_prompts: what it trains, regularises or steers on) shares no
    prompt with an evaluated row: a method would otherwise be rewarded exactly where a rate is measured."""
    def check() -> None:
        evaluated: dict[tuple, str] = {}
        for rows in load_eval(task).values():
            for r in rows:
                evaluated.setdefault(_prompt(r), r["id"])
        for r in load_rows(path):
            if _prompt(r) in evaluated:
                raise BadInput(f"{path}:{r['_line']}: {key} shares its prompt with evaluation row "
                               f"'{evaluated[_prompt(r)]}'; a method's prompts must be disjoint from every split")

    splits = tuple((s, *file_version(spec.path), spec.get("limit")) for s, spec in task.splits.items())
    _once(("disjoint", *file_version(path), splits), check)


def _metric_specs(task: DictConfig) -> None:
    for key, spec in task.metrics.items():
        split = spec.get("split")
        if split not in task.splits:
            raise BadInput(f"task.metrics.{key}.split '{split}': not a split of task '{task.name}' "
                           f"({', '.join(task.splits)})")
        if "fn" in spec:
            if function_at(spec.fn) is None:
                raise BadInput(f"task.metrics.{key}.fn '{spec.fn}': no such function")
        elif spec.get("scorer") not in task.splits[split].scorers:
            raise BadInput(f"task.metrics.{key}.scorer '{spec.get('scorer')}': not a scorer of split '{split}' "
                           f"({', '.join(task.splits[split].scorers)})")


def _finished_output(path: Path, read: Callable[[Path], Any], stage: str, run_dir: Path) -> None:
    """A finished stage's output that a later stage reads: damaged, or shorter than its stage record says (cut at
    a line end), is an error that says how to redo it."""
    def check() -> None:
        rows = read(path)
        if stage == "metrics" and not isinstance(rows, dict):
            raise BadInput(f"{path}: expected a JSON object, got {type(rows).__name__}")
        record_path = run_dir / "stages" / f"{stage}.json"
        record = check_json(record_path) if record_path.exists() else None
        lines = record.get("lines") if isinstance(record, dict) else None  # identity rule `record_lines`
        if lines is not None and len(rows) != lines:
            raise BadInput(f"{path}: {len(rows)} rows where its stage record says {lines} (cut short?)")

    try:
        _once(("output", *file_version(path)), check)
    except BadInput as e:
        raise BadInput(f"{e}; delete it or rerun with 'force=[{stage}]'") from None


def check_inputs(cfg: DictConfig, stages: tuple[str, ...]) -> None:
    """The core's knobs, the runs root and cache, the model path, the task's built files: what must hold before
    a run (its method, generator and judge) is built."""
    check_config(cfg, stages)
    writable_dir("paths.runs", cfg.paths.runs)
    writable_dir("paths.cache", cfg.paths.cache)
    if cfg.data.get("mirror") and not Path(str(cfg.data.mirror)).expanduser().is_dir():
        raise BadInput(f"data.mirror '{cfg.data.mirror}': no such directory")
    models.check_path(cfg.model.path)
    _once(("build", digest(OmegaConf.to_container(cfg.task, resolve=True))), lambda: build_task_files(cfg.task))


def check_run(run: Any, reference: Callable[[], Any]) -> None:
    """A built run (a `pipeline.Run`: its method, generator and judge checked their own knobs when built): its
    directory, its stage records, and every file its remaining stages read. `reference()`: the reference run."""
    cfg = run.cfg
    writable_dir("the run directory", run.dir)

    todo = set()  # requested stages not finished with this config (a record made with another one raises)
    for name in run.outputs():
        if name in cfg.stages and not (name == "train" and run.method.starts_from == "untrained"):
            if not run.stage(name).is_done():
                todo.add(name)
    if (run.method.needs_reference or run.method.starts_from == "reference") and todo & {"train", "generate"}:
        reference().stage("train").is_done()

    task, out = cfg.task, run.outputs()
    if run.method.starts_from != "untrained" and todo & {"train", "generate"}:
        needs = {key: OmegaConf.select(task, key) for key in run.method.task_needs()}
        missing = [key for key, value in needs.items() if value is None]
        if missing:
            raise BadInput(f"method '{run.method.name}' reads task.{missing[0]}, which task '{task.name}' does not set")
        _training_file(task)
        for key, value in needs.items():  # prompt files it reads
            if isinstance(value, str) and value.endswith(".jsonl"):
                _once(("rows", *file_version(value)), lambda v=value: load_rows(v) and None)
                _disjoint_from_splits(f"task.{key}", value, task)
    if "generate" in todo:
        _eval_files(task)
        if run.method.intervenes_at_eval and not getattr(run.generator, "runs_hooks", False):
            raise BadInput(f"method '{run.method.name}' applies hooks at generation time, which generator "
                           f"'{run.generator.name}' cannot run; use generator=hf")
        if hasattr(run.generator, "check"):
            run.generator.check()
    elif "judge" in todo:
        _finished_output(out["generate"], read_jsonl, "generate", run.dir)
    if "judge" in todo:
        run.judge.check({k: OmegaConf.to_container(v.scorers, resolve=True) for k, v in task.splits.items()})
    elif "metrics" in todo:
        _finished_output(out["judge"], read_jsonl, "judge", run.dir)
    if "metrics" in todo:
        _metric_specs(task)
    elif "metrics" in cfg.stages:
        _finished_output(out["metrics"], check_json, "metrics", run.dir)
