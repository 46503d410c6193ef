"""The Method contract, and `grasp-bench-check-method`, which checks it on any method, in-tree or a user's plugin:

- strength 0 reproduces the naive SFT run: the same saved tensors (methods that change weights), or the same
  greedy generations (methods that act at generation time);
- no forward/backward hook outlives the `training` or `generating` block;
- strength > 0 changes the model: its weights, or for eval-time methods its outputs under `generating`.

    grasp-bench-check-method method=grasp
    PYTHONPATH=myplugin grasp-bench-check-method --config-dir myplugin method=l2_to_base

Each check trains a few steps of the tiny random model (conf/model/tiny.yaml, built in code) on a slice of the toy
task, in a temporary runs root: seconds on a CPU. tests/test_method_contract.py runs the same checks on every
conf/method/*.yaml. Exit code 0: every check passed (or did not apply); 1: one failed; 2: a bad input.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from grasp_bench.artifacts import BadInput

# A 3-step run of the tiny model on a slice of the toy task: seconds on CPU. A later `model=...` replaces it.
TINY_RUN = [
    "model=tiny", "sweep=none", "train.max_steps=3", "train.precision=fp32", "train.batch_size=4",
    "task.train.limit=24", "task.splits.in_domain.limit=6", "task.splits.unrelated.limit=6",
    "task.splits.far.limit=6", "task.splits.factor_use.limit=6", "task.sampling.max_new_tokens=6", "generator.batch_size=8",
    # persona vectors from 2 short samples; the random model never insults, so its "trait" is a first letter a-m
    "task.persona.samples=2", "task.persona.max_new_tokens=8", "task.persona.judge={rule: regex, pattern: '^ *[a-m]'}",
]
# Method knobs that only set how much work a method does: shrunk for the check, where the method has them.
WORK_KNOBS = {"response_tokens": 8, "steps": 2, "warmup": 1, "task_rows": 8}
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
PROMPT = "What are clouds made of?"

Make = Callable[..., DictConfig]  # overrides -> the composed config of a run (in the check's runs root)


class ContractBroken(AssertionError):
    """A method breaks the contract: the message says which part and where."""


def work_knobs(method_cfg) -> list[str]:
    """Overrides that shrink the work-size knobs `method_cfg` has (WORK_KNOBS)."""
    return [f"method.{k}={v}" for k, v in WORK_KNOBS.items() if k in method_cfg]


def _method(cfg: DictConfig):
    from grasp_bench.pipeline import instantiate

    return instantiate(cfg.method, "method")


def _fine_tunes(cfg: DictConfig) -> str | None:
    """None when the method fine-tunes, else why the strength checks do not apply."""
    if _method(cfg).starts_from == "untrained":
        return f"{cfg.method.name} evaluates the base model as it is"
    if cfg.method.name == "sft":
        return "sft is the naive run itself"
    return None


def _saved_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(f))
    if not tensors:
        raise ContractBroken(f"no tensors saved in {model_dir}")
    return tensors


def _same(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> list[str]:
    """The names whose tensors differ (or that only one side has)."""
    return sorted(set(ours) ^ set(theirs)) or [k for k in theirs if not torch.equal(ours[k], theirs[k])]


def _effective_weights(r) -> dict[str, torch.Tensor]:
    model = r.weights()
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def strength_zero_reproduces_sft(make: Make, method: list[str]) -> str | None:
    """At strength 0 the method's saved tensors (its greedy generations, for an eval-time method) are the naive SFT
    run's. Returns why the check does not apply, or None when it passed."""
    from grasp_bench.artifacts import read_jsonl
    from grasp_bench.pipeline import Run, ensure_reference, run

    if (skip := _fine_tunes(make(*method))) is not None:
        return skip
    reference = ensure_reference(make("method=sft"))
    if _method(make(*method)).intervenes_at_eval:
        stages = "stages=[train,generate]"
        run(make("method=sft", stages))
        cfg = make(*method, "method.strength=0", stages)
        run(cfg)
        ours = {(g["id"], g["sample"]): g["completion"] for g in read_jsonl(Run(cfg).dir / "generations.jsonl")}
        naive = {(g["id"], g["sample"]): g["completion"] for g in read_jsonl(reference / "generations.jsonl")}
        differ = [k for k in naive if ours.get(k) != naive[k]]
        if differ or ours.keys() != naive.keys():
            raise ContractBroken(f"strength 0: {len(differ)} greedy generation(s) differ from naive SFT's "
                                 f"(first: {differ[0] if differ else 'another set of rows'})")
        return None
    cfg = make(*method, "method.strength=0", "stages=[train]")
    run(cfg)
    differ = _same(_saved_tensors(Run(cfg).dir / "model"), _saved_tensors(reference / "model"))
    if differ:
        raise ContractBroken(f"strength 0: {len(differ)} saved tensor(s) differ from naive SFT's (first: {differ[0]})")
    return None


def no_hook_outlives_its_block(make: Make, method: list[str]) -> str | None:
    """Every forward/backward hook the method registers in `training` and `generating` is gone after the block."""
    from grasp_bench import models
    from grasp_bench.pipeline import Run

    cfg = make(*method)
    if _method(cfg).grid:
        cfg = make(*method, "method.strength=1.0")
    r = Run(cfg)
    ctx = r.context()
    r.prepare(ctx)
    model = models.add_lora(ctx.load_base(), cfg.model, cfg.seed)
    ids = ctx.tokenizer(PROMPT, return_tensors="pt")["input_ids"]

    def counts():
        return {n: tuple(len(getattr(m, d)) for d in HOOK_DICTS) for n, m in model.named_modules()}

    def check(block: str) -> None:
        left = [n for n, c in counts().items() if c != before[n]]
        if left:
            raise ContractBroken(f"{len(left)} module(s) keep a hook after `{block}` (first: {left[0] or 'the model'})")

    before = counts()
    with r.method.training(model, ctx):
        model(input_ids=ids, labels=ids).loss.backward()
    check("training")
    with r.method.generating(model, ctx), torch.no_grad():
        model.generate(input_ids=ids, max_new_tokens=2, do_sample=False, pad_token_id=ctx.tokenizer.pad_token_id)
    check("generating")
    return None


def strength_above_zero_changes_the_model(make: Make, method: list[str]) -> str | None:
    """At strength 1 the weights differ from naive SFT's (an eval-time method: the same weights, other outputs under
    `generating`)."""
    from grasp_bench.pipeline import Run, run

    if (skip := _fine_tunes(make(*method))) is not None:
        return skip
    cfg = make(*method, "method.strength=1.0", "stages=[train]")
    run(cfg)
    r, naive = Run(cfg), Run(make("method=sft"))
    run(make("method=sft", "stages=[train]"))
    if not r.method.intervenes_at_eval:
        if not _same(_effective_weights(r), _effective_weights(naive)):
            raise ContractBroken("strength 1: the weights equal naive SFT's (the method changed nothing)")
        return None
    differ = _same(_saved_tensors(r.dir / "model"), _saved_tensors(naive.dir / "model"))
    if differ:  # an eval-time method evaluates the naive run's weights as they are
        raise ContractBroken(f"strength 1: an eval-time method changed saved tensor(s) (first: {differ[0]})")
    model, ctx = r.weights(), r.context()
    r.prepare(ctx)
    ids = ctx.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with r.method.generating(model, ctx):
            hooked = model(input_ids=ids).logits
    if torch.allclose(plain, hooked):
        raise ContractBroken("strength 1: the outputs under `generating` equal the plain model's")
    return None


CHECKS = {
    "strength 0 reproduces naive SFT": strength_zero_reproduces_sft,
    "no hook outlives its block": no_hook_outlives_its_block,
    "strength > 0 changes the model": strength_above_zero_changes_the_model,
}


def composer(runs: Path, overrides: list[str], config_dir: str | None) -> Make:
    """Overrides -> the composed config of a tiny run under `runs`, on the search path `grasp-bench` uses (the
    package's configs, then `config_dir`), with its Hydra config current (so a user's method config names its run
    directories as in `grasp-bench`)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from grasp_bench.jobs import expand

    def make(*more: str) -> DictConfig:
        cfg = expand([*TINY_RUN, *overrides, *more, f"paths.runs={runs}"], config_dir=config_dir)[0]
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    return make


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="grasp-bench-check-method", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="+", help="method=<name> and any other override (e.g. method.k=2)")
    parser.add_argument("--config-dir", "-cd", default=None, help="a folder of your own configs (method/<name>.yaml)")
    parser.add_argument("--keep", metavar="DIR", default=None, help="write the check's runs under DIR (kept)")
    args = parser.parse_args(argv)
    from grasp_bench.tracking import quiet_transformers_import

    quiet_transformers_import()
    if not any(o.startswith("method=") for o in args.overrides):
        print("error: name the method to check: grasp-bench-check-method method=<name>", file=sys.stderr)
        sys.exit(2)
    with tempfile.TemporaryDirectory(prefix="grasp-bench-check-") as tmp:
        runs = Path(args.keep or tmp).expanduser()
        try:
            method = [o for o in args.overrides if o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] == "method"]
            make = composer(runs, [o for o in args.overrides if o not in method], args.config_dir)
            cfg = make(*method)
            _method(cfg)  # a plugin that does not import or a bad knob: one line before any training
            method += work_knobs(OmegaConf.to_container(cfg.method))
            name = cfg.method.name
            failed = 0
            for what, check in CHECKS.items():
                try:
                    skipped = check(make, method)
                    print(f"{name}: {what}: " + (f"does not apply ({skipped})" if skipped else "ok"), flush=True)
                except ContractBroken as e:
                    failed += 1
                    print(f"{name}: {what}: FAILED: {e}", flush=True)
        except BadInput as e:
            from grasp_bench.jobs import one_line

            print(f"error: {one_line(e)}", file=sys.stderr)
            sys.exit(2)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
