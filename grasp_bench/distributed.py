"""Multi-process training (torchrun / accelerate launch): every rank trains, rank 0 alone writes the run.

    torchrun --nproc_per_node 4 -m grasp_bench sweep=none method=sft train.batch_size=2

The transformers Trainer does the distributed work (DDP; FSDP or DeepSpeed through its own arguments);
this module only tells the pipeline which process it is, and serialises stages across jobs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock


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
