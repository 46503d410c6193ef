"""Residual-stream hooks shared by methods, as context managers that remove every hook on exit.

"Layer L" is the output of decoder block L (0-based), i.e. `output_hidden_states[L + 1]`. `directions`
maps a layer index to a vector (d,) or an orthonormal basis (d, k), in the residual space of that layer.

- `add_to_residual`   h <- h + scale * v                (activation steering)
- `project_out`       h <- h - (h Q) Q^T                (CAFT-style ablation; forward pass changed)
- `project_grad_out`  dL/dh <- dL/dh - (dL/dh Q) Q^T    (forward pass untouched; only learning is blocked)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def _replace_hidden(output, fn: Callable[[torch.Tensor], torch.Tensor]):
    """Decoder blocks return a tensor (transformers 5) or a tuple whose first item is the hidden state."""
    if isinstance(output, tuple):
        return (fn(output[0]), *output[1:])
    return fn(output)


def _basis(direction: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    q = direction.to(device=like.device, dtype=like.dtype)
    return q[:, None] if q.ndim == 1 else q


def project(h: torch.Tensor, Q: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """h - gamma * (h Q) Q^T along the last dimension; Q (d, k) has orthonormal columns. The one projection
    operator: activations, gradients and (GRASP's `project_rows`) a LoRA reader's A."""
    return h - gamma * (h @ Q) @ Q.T


@contextmanager
def registered(*handle_factories: Callable[[], Any]) -> Iterator[None]:
    """Register hooks on entry (each factory returns a handle with `.remove()`) and remove every one on exit,
    even on error: the one place a hook's lifetime is managed."""
    handles = []
    try:
        for make in handle_factories:
            handles.append(make())
        yield
    finally:
        for h in handles:
            h.remove()


def _forward_hooks(layers: nn.ModuleList, directions: Mapping[int, torch.Tensor],
                   edit: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    def hook(direction):
        return lambda module, args, output: _replace_hidden(output, lambda h: edit(h, _basis(direction, h)))

    return registered(*(lambda i=i, d=d: layers[i].register_forward_hook(hook(d)) for i, d in directions.items()))


def add_to_residual(layers: nn.ModuleList, vectors: Mapping[int, torch.Tensor], scale: float = 1.0):
    """h <- h + scale * v at the output of each given block, every position."""
    return _forward_hooks(layers, vectors, lambda h, v: h + scale * v[:, 0])


def project_out(layers: nn.ModuleList, bases: Mapping[int, torch.Tensor], gamma: float = 1.0):
    """h <- h - gamma (h Q) Q^T at the output of each given block, every position, not detached."""
    return _forward_hooks(layers, bases, lambda h, Q: project(h, Q, gamma))


@contextmanager
def project_grad_out(layers: nn.ModuleList, bases: Mapping[int, torch.Tensor], gamma: float = 1.0) -> Iterator[None]:
    """The gradient flowing back into the residual stream at each given block output loses its component
    in span(Q); the forward value is unchanged (identity forward, projected backward)."""

    def attach(h: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        if h.requires_grad:
            h = h.view_as(h)  # a fresh node, so the hook sees only this block output's gradient
            h.register_hook(lambda g: project(g, Q.to(g.dtype), gamma))
        return h

    with _forward_hooks(layers, bases, attach):
        yield
