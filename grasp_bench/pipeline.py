"""One run = one (task, model, method, strength, seed) = one directory, made by four file-to-file stages:

    train     -> model/ (a PEFT adapter, or full weights when a method merged them), train_log.jsonl
    generate  -> generations.jsonl
    judge     -> judgments/<judge>.jsonl
    metrics   -> metrics/<judge>.json

Each stage is skipped when its output exists and was made with the same config slice, input files' content
included (a different one is an error naming the key or file; grasp_bench.identity says what "the same" is and
names the run directory), so a rerun after a kill completes the run and a new judge reuses old generations.
A method's diagnostics (`ctx.diagnostics`) are kept in the record of the stage that made them
(stages/<stage>.json) and reported by the metrics stage.
"""

from __future__ import annotations

import ctypes
import gc
import re
import shutil
import sys
from copy import deepcopy
from dataclasses import replace
from pathlib import Path

import hydra.utils
import torch
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from grasp_bench import device, distributed, models
from grasp_bench import validate as checks
from grasp_bench.artifacts import (
    BadInput,
    atomic_path,
    check_json,
    digest,
    environment,
    load_json,
    read_jsonl,
    write_json,
    write_jsonl,
    write_text,
)
from grasp_bench.data import load_eval, load_train, training_examples
from grasp_bench.generate import WeightPaths
from grasp_bench.identity import STAGES, RunKey, Stage, diagnostics, method_dirname, run_dir
from grasp_bench.layout import plain
from grasp_bench.method import Method, RunContext
from grasp_bench.tracking import make_logger

__all__ = ["Run", "diagnostics", "ensure_reference", "ensure_reference_cfg", "method_dirname", "run", "run_dir",
           "validate"]

SFT = {"_target_": "grasp_bench.method.Method", "name": "sft", "strength": 0.0}


def instantiate(node: DictConfig, key: str):
    """hydra.utils.instantiate of config group `key`, letting a BadInput raised by the target through unwrapped,
    a `_target_` that does not import (`importable`) and an unknown knob (the target's TypeError) as one (one line,
    exit 2)."""
    if isinstance(node, DictConfig) and isinstance(node.get("_target_"), str):
        importable(key, node._target_)
    try:
        return hydra.utils.instantiate(node, _convert_="all")
    except Exception as e:  # noqa: BLE001 - Hydra wraps whatever the target raised
        cause = e
        while cause.__cause__ is not None and not isinstance(cause, BadInput):
            cause = cause.__cause__
        if isinstance(cause, BadInput):
            raise cause from None
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
        if isinstance(cause, TypeError) and unexpected:
            if key == "method":  # a plugin's own __init__ without that knob: list the ones its config has
                from grasp_bench.layout import method_knobs
                from grasp_bench.method import unknown_knob

                known = {k: v for k, v in method_knobs(plain(node)).items() if k != unexpected[1]}
                raise unknown_knob(node.get("name", "?"), unexpected[1], known) from None
            raise BadInput(f"{key}={node.get('name', '?')}: {cause}") from None
        raise


def importable(key: str, target: str) -> None:
    """`<key>._target_` names something Python imports; else one BadInput saying which module failed and how to
    make it importable (a plugin module in a user's folder is imported only when that folder is on PYTHONPATH)."""
    import importlib
    import traceback

    parts = target.split(".")
    found, module = None, ""
    for i in range(1, len(parts) + 1):  # the longest prefix that is a module; the rest are attributes
        name = ".".join(parts[:i])
        try:
            found_i = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
                break  # this prefix is no module
            failed = (e, name)
        except Exception as e:  # noqa: BLE001 - the module was found and its own code failed
            failed = (e, name)
        else:
            found, module = found_i, name
            continue
        e, name = failed
        frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith("<")]
        at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        raise BadInput(f"{key}._target_={target}: importing module '{name}' failed{at}: {type(e).__name__}: "
                       f"{' '.join(str(e).split())}") from None
    if found is not None:
        for attr in parts[len(module.split(".")):]:
            if not hasattr(found, attr):
                raise BadInput(f"{key}._target_={target}: module '{module}' ({getattr(found, '__file__', module)}) "
                               f"has no '{attr}'")
            found = getattr(found, attr)
        return
    top = parts[0]
    from grasp_bench.layout import config_dirs

    folders = [*config_dirs()[1:], Path.cwd()]  # the user's config folders (--config-dir), then here
    holder = next((d for d in folders if (d / f"{top}.py").is_file() or (d / top / "__init__.py").is_file()), None)
    if holder is not None:
        how = f"it is in {holder}: rerun with PYTHONPATH={holder} (a folder is not on the Python path by itself)"
    else:
        how = (f"put the folder that holds {top}.py on the Python path: PYTHONPATH=<folder> grasp-bench ... "
               "(e.g. the --config-dir folder, if the module sits beside your configs)")
    raise BadInput(f"{key}._target_={target}: no module named '{top}' on the Python path; {how}")


def _free(*objs) -> None:
    del objs
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:  # glibc keeps freed heap pages: hand them back, so the next model's load does not stack on them
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class Run:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.method: Method = instantiate(cfg.method, "method")
        self.key = RunKey(cfg, type(self.method))  # its directory and what each stage is made with
        self.dir = self.key.dir
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.cache = Path(cfg.paths.cache).expanduser()
        self._tokenizer = None
        # built first, so that a bad generator or judge config fails before any training (both are cheap to make)
        self.generator, self.judge = instantiate(cfg.generator, "generator"), instantiate(cfg.judge, "judge")

    def outputs(self) -> dict[str, Path]:
        """Each stage's output, in stage order."""
        return {"train": self.dir / "model", "generate": self.dir / "generations.jsonl",
                "judge": self.dir / "judgments" / f"{self.judge.name}.jsonl",
                "metrics": self.dir / "metrics" / f"{self.judge.name}.json"}

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = models.load_tokenizer(self.cfg.model, self.cache)
        return self._tokenizer

    def stage(self, name: str) -> Stage:
        """One of the run's stages (train, generate, judge, metrics): its output and its config slice."""
        return self.key.stage(name, self.outputs()[name])

    def context(self) -> RunContext:
        ctx = RunContext(cfg=self.cfg, run_dir=self.dir, tokenizer=self.tokenizer,
                         load_base=lambda: models.load_base(self.cfg.model, self.cache, self.device))
        if self.method.needs_reference or self.method.starts_from == "reference":
            ctx.reference_dir = ensure_reference(self.cfg)
        ctx.train_rows = load_train(self.cfg.task)
        return ctx

    def prepare(self, ctx: RunContext) -> None:
        with torch.random.fork_rng():  # a method's set-up must not shift data order or LoRA init
            self.method.prepare(ctx)

    def weight_paths(self) -> WeightPaths:
        """Where the model a run evaluates lives: base, base + adapter, or its own full weights."""
        base = WeightPaths(models.resolve_path(self.cfg.model.path, self.cache), self.cfg.model.get("revision"),
                           dtype=self.cfg.model.dtype)
        if self.method.starts_from == "untrained":
            return base
        weights = self.dir / "model"
        if (weights / "adapter_config.json").exists():
            return replace(base, adapter=str(weights))
        return replace(base, model=str(weights), revision=None)

    def weights(self) -> torch.nn.Module:
        """The model a run evaluates, loaded in this process."""
        paths = self.weight_paths()
        model = models.load_base(OmegaConf.merge(self.cfg.model, {"path": paths.model, "revision": paths.revision}),
                                 self.cache, self.device)
        return models.load_adapter(model, paths.adapter) if paths.adapter else model

    def train_stage(self, logger) -> None:
        if self.method.starts_from == "untrained":
            return
        stage = self.stage("train")
        if stage.is_done():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        # one trainer per run directory: a job of this run and a concurrent on-demand reference (the same naive
        # SFT directory) must not both train it; the one that waited finds it done
        with distributed.exclusive(self.dir / ".train.lock"):
            if not stage.is_done():
                self._train(stage, logger)

    def _train(self, stage: Stage, logger) -> None:
        from grasp_bench.train import CHECKPOINTS, effective_optim, train

        ctx = self.context()
        stage.start()  # after the reference run it may need: that run's own record holds its time
        examples = None  # tokenised and checked before any weights load
        if self.method.starts_from != "reference":
            examples = training_examples(self.tokenizer, ctx.train_rows, self.cfg.train)
            checked = deepcopy(ctx.train_rows)
        # sharded as it loads when the Trainer trains it (a method that starts from the reference adapter edits
        # the whole model in every process, as without sharding)
        sharded = self.method.starts_from == "base" and distributed.sharded(self.cfg.train)
        base = models.load_base(self.cfg.model, self.cache, self.device,
                                distributed.load_kwargs(self.cfg.train) if sharded else None)
        if self.method.starts_from == "reference":
            model, log = models.load_adapter(base, ctx.reference_adapter, trainable=True), []
            self.prepare(ctx)
        else:
            torch.manual_seed(self.cfg.seed)
            model = models.add_lora(base, self.cfg.model, self.cfg.seed)
            self.prepare(ctx)
            if ctx.train_rows != checked:  # the method rewrote training rows (a system prompt, mixed-in chat)
                examples = training_examples(self.tokenizer, ctx.train_rows, self.cfg.train)
            log = train(model, self.tokenizer, self.method, ctx, on_log=logger.log_step, examples=examples,
                        checkpoint_key=digest(stage.slice))
        model = self.method.post_train(model, ctx)  # the one call: may edit or merge weights
        saved = {"state_dict": distributed.adapter_state(model)} if sharded else {}  # every rank joins the gather
        if not distributed.is_main():  # every rank trained the same weights; rank 0 writes them
            _free(model, base)
            return
        with atomic_path(self.dir / "model") as tmp:
            model.save_pretrained(tmp, **saved)
            if not (tmp / "adapter_config.json").exists():
                self.tokenizer.save_pretrained(tmp)  # full weights: a self-contained checkpoint
        write_jsonl(self.dir / "train_log.jsonl", log)
        shares = [r["train/useful_token_share"] for r in log if r.get("train/useful_token_share") is not None]
        stage.mark_done(final_loss=log[-1]["train/loss"] if log else None, steps=len(log),
                        optim=effective_optim(self.cfg.train.optim),
                        useful_token_share=sum(shares) / len(shares) if shares else None,
                        **({"diagnostics": ctx.diagnostics} if ctx.diagnostics else {}))
        shutil.rmtree(self.dir / CHECKPOINTS, ignore_errors=True)  # the stage is done: its checkpoints go
        _free(model, base)

    def generate_stage(self) -> None:
        generator = self.generator  # validate() checked that it can run the method's eval-time hooks
        stage = self.stage("generate")
        out = stage.output
        if stage.is_done():
            return
        stage.start()
        rows = [r for split in load_eval(self.cfg.task).values() for r in split]
        if not generator.runs_hooks:  # out of process: it loads the weights from their paths
            generator.run(self.weight_paths(), self.tokenizer, rows, self.cfg.task.sampling, out, self.cfg.seed)
            stage.mark_done(rows=len(rows), lines=len(read_jsonl(out)))
            return
        model = self.weights()
        ctx = RunContext(cfg=self.cfg, run_dir=self.dir, tokenizer=self.tokenizer)
        if self.method.intervenes_at_eval:
            ctx = self.context()
            self.prepare(ctx)
        with self.method.generating(model, ctx):
            generator.run(model, self.tokenizer, rows, self.cfg.task.sampling, out, self.cfg.seed)
        stage.mark_done(rows=len(rows), lines=len(read_jsonl(out)),
                        **({"diagnostics": ctx.diagnostics} if ctx.diagnostics else {}))
        _free(model)

    def judge_stage(self) -> Path:
        judge = self.judge
        stage = self.stage("judge")
        out = stage.output
        if not stage.is_done():
            stage.start()
            scorers = {k: plain(v.scorers) for k, v in self.cfg.task.splits.items()}
            judge.run(read_jsonl(self.dir / "generations.jsonl"), scorers, out)
            judgments = read_jsonl(out)
            failed = [r for r in judgments if r["score"] is None and "error" in (r.get("raw") or {})]
            if failed:  # unscored for now, not for good: the stage stays unfinished, so a rerun asks again
                print(f"warning: {self.dir}: {len(failed)} judge request(s) failed (first: {failed[0]['raw']['error']}); "
                      "their rows count as unscored; rerun the same command to retry them (answers already given "
                      "are cached)", file=sys.stderr, flush=True)
            else:
                stage.mark_done(lines=len(judgments))
        return out

    def metrics_stage(self, judgments: Path) -> dict:
        from grasp_bench.metrics import compute

        stage = self.stage("metrics")
        out = stage.output
        if stage.is_done():
            return check_json(out, "delete it or rerun with 'force=[metrics]'")
        metrics = {
            "task": self.cfg.task.name, "model": self.cfg.model.name, "method": self.cfg.method.name,
            "variant": self.key.method_dirname, "strength": float(self.cfg.method.strength),
            "seed": self.cfg.seed, "judge": self.cfg.judge.name,
        }
        metrics.update(compute(plain(self.cfg.task.metrics), read_jsonl(judgments)))
        train_record = self.dir / "stages" / "train.json"
        if train_record.exists():
            metrics["train/final_loss"] = load_json(train_record).get("final_loss")
        metrics.update(diagnostics(self.dir))
        write_json(out, metrics)
        stage.mark_done()
        return metrics


def ensure_reference_cfg(cfg: DictConfig) -> DictConfig:
    """The config of the naive SFT run of the same task/model/seed."""
    ref_cfg = deepcopy(cfg)
    OmegaConf.set_struct(ref_cfg, False)
    ref_cfg.method = SFT
    ref_cfg.force = []
    return ref_cfg


def ensure_reference(cfg: DictConfig) -> Path:
    """The naive SFT run of the same task/model/seed, trained on demand (once: train_stage holds its lock)."""
    ref = Run(ensure_reference_cfg(cfg))
    if distributed.is_main() and not ref.stage("train").is_done():
        print(f"[grasp-bench] building the reference run {ref.dir} (or waiting for the job that trains it)",
              file=sys.stderr)
    ref.train_stage(make_logger(None))  # under the run directory's lock
    return ref.dir


def validate(cfg: DictConfig) -> Run:
    """Raises BadInput for the first bad knob or input of this run (grasp_bench.validate); loads no model, writes
    no run file. Returns the run, built."""
    checks.check_inputs(cfg, STAGES)
    r = Run(cfg)  # builds the method, generator and judge: each checks its own knobs
    instantiate(cfg.logger, "logger")  # and the logger (built, never started)
    checks.check_run(r, lambda: Run(ensure_reference_cfg(cfg)))
    return r


def run(cfg: DictConfig) -> dict:
    """Every stage of one run; returns its metrics (empty on ranks other than 0, which only train)."""
    r = validate(cfg)  # every knob and input, before anything is written
    main = distributed.is_main()
    r.dir.mkdir(parents=True, exist_ok=True)  # every rank: a method's prepare() may cache files in it
    if main:
        write_text(r.dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        train = device.resolved_train(plain(cfg.train))  # what `auto` is on this machine
        write_json(r.dir / "env.json", {**environment(), "train_precision": train["precision"],
                                        "train_batching": train["batching"], "native_bf16": device.native_bf16()})
    logger = make_logger(cfg.logger if main else None, cfg=cfg, run_dir=r.dir)
    exit_code = 1  # until every stage returned: a failed job shows as failed in the tracker
    try:
        stages = set(cfg.stages)
        if "train" in stages:
            r.train_stage(logger)
        if not main:
            exit_code = 0
            return {}
        metrics = {}
        # one process evaluates a run directory at a time (their partial files would interleave); a second one,
        # e.g. of another sweep on the same runs root, waits, then finds the stages done
        with FileLock(str(r.dir / ".eval.lock")):
            if "generate" in stages:
                r.generate_stage()
            if "judge" in stages:
                judgments = r.judge_stage()
                if "metrics" in stages:
                    metrics = r.metrics_stage(judgments)
                    logger.summary(metrics, generations=r.dir / "generations.jsonl", judgments=judgments)
        exit_code = 0
        return metrics
    finally:
        logger.finish(exit_code=exit_code)
