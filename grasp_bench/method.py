"""The Method plugin contract: every intervention is a `Method` whose hooks the one pipeline calls.

Every hook is a no-op, so `Method()` is plain LoRA fine-tuning (`method=sft`), and a method at
strength 0 must reproduce it exactly (tested for every `conf/method/*.yaml`).

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
    knobs_before: ClassVar[dict[str, Any]] = {}  # knob -> the behaviour runs recorded before the knob existed had,
    # where the YAML default is a newer one (a corrected baseline): such a record no longer counts (an error naming
    # the knob), instead of being read with the new default and silently reused

    def __init__(self, name: str = "sft", strength: float = 0.0, grid: list[float] | None = None, **params: Any):
        if params:
            raise BadInput(f"method '{name}': unknown knob(s) {sorted(params)}")
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
            raise BadInput(f"method.strength={strength!r}: expected a number in [0, 1]")
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
    unknown = sorted(set(given) - set(defaults)) if defaults else []
    if unknown:
        raise TypeError(f"method '{name}' got unknown parameters {unknown} (known: {sorted(defaults)})")
    params = {**defaults, **given}
    params.setdefault("strength", 0.0)
    params.setdefault("grid", None)
    return params
