"""Multi-process training (torchrun / accelerate launch): every rank trains, rank 0 alone writes the run.

    torchrun --nproc_per_node 4 -m grasp_bench sweep=none method=sft train.batch_size=2
    grasp-bench -m method=sft hydra/launcher=slurm hydra.launcher.tasks_per_node=4 hydra.launcher.gpus_per_node=4

The transformers Trainer does the distributed work (DDP: every process holds the whole model); this module only
tells the pipeline which process it is, and serialises stages across jobs. A sharded launch (`accelerate launch`
with an FSDP or DeepSpeed config) is refused (`check_launch`): rank 0 alone would save the adapter from its shard,
and methods that act on LoRA weights (GRASP's projection) hold the tensors FSDP replaces when it shards them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock

from grasp_bench.artifacts import BadInput


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


def check_launch() -> None:
    """Raises BadInput in a process that `accelerate launch` started to shard the model (see the module docstring)."""
    for variable, name in SHARDED_LAUNCH.items():
        if os.environ.get(variable, "").lower() in ("true", "1"):
            raise BadInput(f"{variable}={os.environ[variable]}: {name} sharding is not supported by grasp-bench's train "
                           "stage yet; launch with torchrun (DDP), or fit one GPU with train.gradient_checkpointing=true "
                           "and model.quantization=nf4 (docs/training.md)")


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
