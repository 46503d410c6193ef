"""The Method plugin contract: every intervention is a `Method` whose hooks the one pipeline calls.

Every hook is a no-op, so `Method()` is plain LoRA fine-tuning (`method=sft`), and a method at
strength 0 must reproduce it exactly (grasp_bench.contract; `grasp-bench-check-method method=<name>`).
A method declares each knob's type and range once, `knobs = {"beta_max": Knob(float, low=0)}`; its YAML config
holds the defaults (docs/extending.md).

Where the pipeline calls the hooks:

    method.prepare(ctx)                         # once, before LoRA training; RNG state is restored after it;
                                                # training uses ctx.train_rows as prepare leaves them
    with method.training(model, ctx):           # forward/backward/tensor hooks live exactly this long
        for each optimizer step:
            loss = task loss (+ method.extra_loss(model, batch, ctx) when not None); backward, clip, optimizer.step()
            method.on_optimizer_step(model, ctx)
    model = method.post_train(model, ctx)       # may edit or merge weights; returns what is saved
    with method.generating(model, ctx):         # eval-time hooks (force the HF generator)
        generate
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from omegaconf import DictConfig
from torch import Tensor, nn

from grasp_bench.artifacts import BadInput
from grasp_bench.layout import method_config


@dataclass(frozen=True)
class Knob:
    """A method knob's type and range: `Knob(float, low=0)`, `Knob(int, low=1)`, `Knob(str, choices=("a", "b"))`,
    `Knob(list, null=True)`. `float` takes ints too; no knob takes a bool unless its type is bool. `low_open`:
    the low end is excluded; `null`: None is allowed."""

    type: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple | None = None
    null: bool = False

    def check(self, key: str, value: Any) -> None:
        """Raises BadInput (`<key>=<value>: expected ...`) unless `value` fits."""
        if value is None and self.null:
            return
        types = (int, float) if self.type is float else (self.type,)
        ok = isinstance(value, types) and (self.type is bool or not isinstance(value, bool))
        if ok and self.choices is not None:
            ok = value in self.choices
        if ok and self.low is not None:
            ok = value > self.low if self.low_open else value >= self.low
        if ok and self.high is not None:
            ok = value <= self.high
        if not ok:
            raise BadInput(f"{key}={value!r}: expected {self.describe()}")

    def describe(self) -> str:
        if self.choices is not None:
            what = "one of " + ", ".join(map(str, self.choices))
        else:
            what = {float: "a number", int: "an integer", str: "a string", bool: "true or false", list: "a list",
                    dict: "a mapping"}.get(self.type, self.type.__name__)
            if self.low is not None and self.high is not None:
                what += f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
            elif self.low is not None:
                what += f" {'>' if self.low_open else '>='} {self.low:g}"
            elif self.high is not None:
                what += f" <= {self.high:g}"
        return what + (" or null" if self.null else "")


STRENGTH = Knob(float, low=0, high=1)


def unknown_knob(method: str, key: str, known: Mapping[str, Any]) -> BadInput:
    """The one message for a knob a method does not have: it lists the ones it has."""
    return BadInput(f"method.{key}: not a knob of method '{method}' (its knobs: "
                    f"{', '.join(['strength', 'grid', *sorted(known)])})")


@dataclass
class RunContext:
    """What a Method may read. It never owns the optimizer, the data loader or the run layout."""

    cfg: DictConfig  # the composed config
    run_dir: Path
    tokenizer: Any = None
    train_rows: list[dict] = field(default_factory=list)  # chat rows of the training set
    reference_dir: Path | None = None  # the naive SFT run of the same task/model/seed (when needed)
    load_base: Callable[[], nn.Module] | None = None  # a fresh copy of the base model (no LoRA)
    step: int = 0  # optimizer steps taken so far
    logs: dict[str, float] = field(default_factory=dict)  # per-step diagnostics, namespaced "<method>/..."
    # once-per-run diagnostics ("<method>/..."): kept in the stage's record, reported in metrics/<judge>.json
    diagnostics: dict[str, float] = field(default_factory=dict)

    def layers(self, model: nn.Module) -> nn.ModuleList:
        from grasp_bench.models import decoder_layers

        return decoder_layers(model, self.cfg.model.layers_path)

    def log(self, **values: float) -> None:
        self.logs.update(values)

    @property
    def reference_adapter(self) -> Path:
        assert self.reference_dir is not None, "this method did not set needs_reference"
        return self.reference_dir / "model"


class Method:
    """A fine-tuning intervention. `strength` in [0, 1] maps onto the method's own knob."""

    starts_from: ClassVar[Literal["base", "reference", "untrained"]] = "base"
    # "base": LoRA fine-tune from the base model; "reference": start from the naive SFT run's weights
    # (eval-time methods, restoration); "untrained": evaluate the base model as is.
    needs_reference: ClassVar[bool] = False  # True: needs the naive SFT run of the same task/model/seed
    intervenes_at_eval: ClassVar[bool] = False  # True: eval-time hooks, so only the HF generator can run it
    task_inputs: ClassVar[tuple[str, ...]] = ()  # task keys read beyond the training set (e.g. "persona"): they
    # join the train stage's config slice, so editing them invalidates this method's runs and no others
    knobs: ClassVar[dict[str, Knob]] = {}  # knob -> its type and range, checked when the method is built (before any
    # job of a sweep runs); the YAML config (conf/method/<name>.yaml) holds the defaults. A knob not declared here
    # is refused, naming the declared ones.
    knobs_before: ClassVar[dict[str, Any]] = {}  # knob -> the behaviour runs recorded before the knob existed had,
    # where the YAML default is a newer one (a corrected baseline): such a record no longer counts (an error naming
    # the knob), instead of being read with the new default and silently reused

    def __init__(self, name: str = "sft", strength: float = 0.0, grid: list[float] | None = None, **params: Any):
        """Checks `strength` and every knob in `params` against `knobs`, then sets each knob as an attribute (a
        plugin that only declares `knobs` needs no __init__ of its own)."""
        STRENGTH.check("method.strength", strength)
        declared = type(self).knobs
        for key, value in params.items():
            if key not in declared:
                raise unknown_knob(name, key, declared)
            declared[key].check(f"method.{key}", value)
            if not callable(getattr(type(self), key, None)) and not isinstance(getattr(type(self), key, None), property):
                setattr(self, key, value)
        self.name, self.strength = name, float(strength)
        self.grid = list(grid or [])  # the strengths a trade-off sweep visits (conf/method/<name>.yaml)

    def task_needs(self) -> tuple[str, ...]:
        """The task keys (dotted paths) this variant reads when it runs: validation refuses a task without one
        before the first job of a sweep starts. At strength 0 a method is naive SFT and reads none."""
        return type(self).task_inputs if self.strength > 0 else ()

    def prepare(self, ctx: RunContext) -> None:
        """Once before training: find directions, subspaces (cache them in ctx.run_dir); may rewrite
        ctx.train_rows (the training set is tokenised again, and checked, when it does)."""

    def training(self, model: nn.Module, ctx: RunContext) -> AbstractContextManager[None]:
        return nullcontext()

    def extra_loss(self, model: nn.Module, batch: dict[str, Tensor], ctx: RunContext) -> Tensor | None:
        """A term added to the training loss of every batch (inside `training`); None adds nothing."""
        return None

    def on_optimizer_step(self, model: nn.Module, ctx: RunContext) -> None:
        """After every optimizer step; per-step diagnostics go to ctx.log(...), per-run ones to ctx.diagnostics."""

    def post_train(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        return model

    def generating(self, model: nn.Module, ctx: RunContext) -> AbstractContextManager[None]:
        return nullcontext()


class Untrained(Method):
    """`method=base`: the base model as it is, the origin of every trade-off curve."""

    starts_from = "untrained"


def configured(name: str, given: Mapping[str, Any], home: str | None = None) -> dict[str, Any]:
    """Method `name`'s parameters: conf/method/<name>.yaml, the one place method defaults live, overridden by
    `given`. So `CAFT()` in Python is the same variant as `method=caft`, and `Steering(name="steer_eval")` as
    `method=steer_eval`. `home`: the class's own config, whose knobs a config of another name (a user's
    `method/mine.yaml` with `_target_` this class) inherits where it does not set them."""
    found = {**(method_config(home) if home and home != name else {}), **method_config(name)}
    defaults = {k: v for k, v in found.items() if k not in ("_target_", "name")}
    unknown = sorted(set(given) - set(defaults) - {"strength", "grid"}) if defaults else []
    if unknown:
        raise unknown_knob(name, unknown[0], {k: v for k, v in defaults.items() if k not in ("strength", "grid")})
    params = {**defaults, **given}
    params.setdefault("strength", 0.0)
    params.setdefault("grid", None)
    return params
