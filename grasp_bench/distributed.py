"""Multi-process training (torchrun / accelerate launch): every rank trains, rank 0 alone writes the run.

    torchrun --nproc_per_node 4 -m grasp_bench sweep=none method=sft train.batch_size=2
    grasp-bench -m method=sft hydra/launcher=slurm hydra.launcher.tasks_per_node=4 hydra.launcher.gpus_per_node=4

The transformers Trainer does the distributed work: DDP by default (every process holds the whole model), or,
with `train.sharding=fsdp`, FSDP2 over the decoder blocks, applied by transformers while the base loads
(`from_pretrained(distributed_config=...)`: each process reads only its shard of each weight, never a whole host
copy). The LoRA adapter added after it stays an ordinary tensor on every process (the Trainer broadcasts it from
rank 0 and averages its gradient), so method hooks on LoRA weights and activations see whole tensors; a hook that
reads a base weight gathers it (`full`). This module tells the pipeline which process it is, what sharding loads
with, and serialises stages across jobs.

    torchrun --nproc_per_node 4 -m grasp_bench sweep=none method=grasp train.sharding=fsdp

An `accelerate launch` with an FSDP or DeepSpeed config is refused (`check_launch`): accelerate would shard the
model its own way after loading (a whole copy per process first) and rank 0 would save its shard as the adapter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock

from grasp_bench.artifacts import BadInput
from grasp_bench.jobs import launcher_setting


def adopt_submitit_tasks() -> None:
    """A submitit job with several tasks (`hydra.launcher.tasks_per_node=N`, SLURM or local) becomes one
    torch.distributed group of N processes, exactly as if torchrun had started them."""
    if "RANK" in os.environ or not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    if JobEnvironment().num_tasks > 1:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)  # accelerate picks cuda:LOCAL_RANK


SHARDED_LAUNCH = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DeepSpeed"}  # set by accelerate launch


SHARDINGS = ("none", "fsdp")


def sharding(train_cfg) -> str:
    """`train.sharding` as asked: `none` where unset."""
    return train_cfg.get("sharding") or "none"


def processes(cfg) -> int:
    """The processes a run trains in: its Hydra launcher's tasks per node × nodes (a SLURM or submitit profile: the
    submitting process knows them before they exist), else this process's world (torchrun's)."""
    per_node = launcher_setting(cfg, "tasks_per_node")
    return int(per_node) * int(launcher_setting(cfg, "nodes") or 1) if per_node else world_size()


def check_launch(cfg) -> None:
    """Raises BadInput for a launch that cannot shard as asked, before anything loads: `accelerate launch` with an
    FSDP or DeepSpeed config (see the module docstring); train.sharding=fsdp in one process (nothing to shard
    over) or with a bitsandbytes-quantised base (FSDP2 cannot shard its packed weights)."""
    for variable, name in SHARDED_LAUNCH.items():
        if os.environ.get(variable, "").lower() in ("true", "1"):
            raise BadInput(f"{variable}={os.environ[variable]}: {name} through accelerate launch is not supported; "
                           "launch with torchrun and train.sharding=fsdp (docs/training.md)")
    asked, quantization = sharding(cfg.train), cfg.model.get("quantization")
    if asked == "none":
        return
    if processes(cfg) < 2:
        raise BadInput(f"train.sharding={asked}: this launch has 1 process, nothing to shard over; launch several "
                       "(torchrun --nproc_per_node N) or use train.sharding=none")
    if quantization not in (None, "none"):
        raise BadInput(f"train.sharding={asked} with model.quantization={quantization}: FSDP2 cannot shard "
                       "bitsandbytes' packed weights; use one of them")


def sharded(train_cfg) -> bool:
    """Whether this process trains sharded: sharding asked, in a launch of several processes."""
    return sharding(train_cfg) != "none" and world_size() > 1


def load_kwargs(train_cfg) -> dict:
    """`from_pretrained` keyword arguments that shard the base as it loads (FSDP2 over all processes of the group:
    transformers' `DistributedConfig`), or none."""
    if not sharded(train_cfg):
        return {}
    from transformers.distributed import DistributedConfig

    return {"distributed_config": DistributedConfig(fsdp_size=world_size())}


def full(t: torch.Tensor) -> torch.Tensor:
    """A whole tensor from a sharded one (a collective: every process calls it, in the same order)."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable weights (the adapter) as whole CPU tensors, on every process (gathered where sharded): what
    `save_pretrained(state_dict=...)` writes; the frozen base is never gathered."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: full(v).detach().cpu() for k, v in model.state_dict().items() if k in trainable}


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def _state():
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())  # the same process group the Trainer will use


def barrier() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


@contextmanager
def exclusive(lock_path: str | Path) -> Iterator[None]:
    """A file lock between jobs. Under torchrun rank 0 holds it for the whole process group, and every rank
    enters only once rank 0 has it, so all ranks see the same files and agree on what is left to do."""
    lock = FileLock(str(lock_path))
    if world_size() == 1:
        with lock:
            yield
        return
    if is_main():
        lock.acquire()
    try:
        barrier()
        yield
        barrier()  # rank 0 has written what the others may read next
    finally:
        if is_main():
            lock.release()
