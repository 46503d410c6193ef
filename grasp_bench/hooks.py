"""Residual-stream hooks shared by methods, as context managers that remove every hook on exit.

"Layer L" is the output of decoder block L (0-based), i.e. `output_hidden_states[L + 1]`. `directions`
maps a layer index to a vector (d,) or an orthonormal basis (d, k), in the residual space of that layer.

- `add_to_residual`   h <- h + scale * v                (activation steering; every or only the last position)
- `project_out`       h <- h - (h Q) Q^T                (CAFT-style ablation; forward pass changed)
- `project_grad_out`  dL/dh <- dL/dh - gamma (dL/dh Q) Q^T   (forward pass untouched; only learning is blocked;
                      0 < gamma < 1 mixes the naive and the fully projected gradient, so gamma never compounds)
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


def add_to_residual(layers: nn.ModuleList, vectors: Mapping[int, torch.Tensor], scale: float = 1.0,
                    last_position_only: bool = False):
    """h <- h + scale * v at the output of each given block, every position; `last_position_only`: at the last
    position of each forward pass only, i.e. while generating with a KV cache, the last prompt token and every
    generated token, never the rest of the prompt (persona_vectors' "response" positions)."""
    if not last_position_only:
        return _forward_hooks(layers, vectors, lambda h, v: h + scale * v[:, 0])

    def add_last(h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        shift = torch.zeros_like(h)
        shift[..., -1, :] = scale * v[:, 0]
        return h + shift

    return _forward_hooks(layers, vectors, add_last)


def project_out(layers: nn.ModuleList, bases: Mapping[int, torch.Tensor], gamma: float = 1.0):
    """h <- h - gamma (h Q) Q^T at the output of each given block, every position, not detached."""
    return _forward_hooks(layers, bases, lambda h, Q: project(h, Q, gamma))


class _Mix(torch.autograd.Function):
    """Identity forward. Backward, given the gradient g at the top block output: the blocks below receive
    (1 − γ)·(their naive gradient from g) + γ·(their fully projected gradient from g). The naive part is a second
    backward pass through the retained graph with the projection hooks switched off; it is added to the
    parameters' .grad directly (so gradient hooks on a parameter, e.g. DDP's, still fire once per backward)."""

    @staticmethod
    def forward(ctx, h, gamma, state, params):
        ctx.gamma, ctx.state, ctx.params = gamma, state, params
        ctx.save_for_backward(h)
        return h.view_as(h)

    @staticmethod
    def backward(ctx, g):
        (h,) = ctx.saved_tensors
        ctx.state["plain"] = True
        try:
            naive = torch.autograd.grad(h, ctx.params, (1.0 - ctx.gamma) * g, retain_graph=True, allow_unused=True)
        finally:
            ctx.state["plain"] = False
        with torch.no_grad():
            for p, part in zip(ctx.params, naive):
                if part is not None:
                    p.grad = part if p.grad is None else p.grad.add_(part)
        return ctx.gamma * g, None, None, None


@contextmanager
def project_grad_out(layers: nn.ModuleList, bases: Mapping[int, torch.Tensor], gamma: float = 1.0) -> Iterator[None]:
    """The gradient flowing back into the residual stream at each given block output loses γ of its component in
    span(Q); the forward value is unchanged (identity forward, projected backward).

    γ = 1: at each given block output the gradient loses its span(Q) component before it flows on, so no learning
    signal passes through span(Q) at any of them. 0 < γ < 1: the gradient every parameter of the blocks receives is
    (1 − γ)·(naive gradient) + γ·(the γ = 1 gradient), so the span(Q) component of dL/dh at every given block output
    is exactly (1 − γ) times the naive one, whatever the number of blocks above it. (Projecting γ at each block in
    turn would compound along the residual stream: with one Q shared by the blocks, the gradient reaching block j
    would keep (1 − γ)^(blocks above j) of its component.) It costs a second backward pass through the blocks."""
    if gamma == 0.0:
        yield
        return
    state = {"plain": False}
    params = [p for p in layers.parameters() if p.requires_grad]

    def attach(h: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        if h.requires_grad:
            h = h.view_as(h)  # a fresh node, so the hook sees only this block output's gradient
            h.register_hook(lambda g: None if state["plain"] else project(g, Q.to(g.dtype)))
        return h

    def mix(module, args, output):
        return _replace_hidden(output, lambda h: _Mix.apply(h, gamma, state, params) if h.requires_grad else h)

    # the mixing hook is registered last, so it runs after (above) the projection at the top block
    mixing = [lambda: layers[len(layers) - 1].register_forward_hook(mix)] if 0.0 < gamma < 1.0 else []
    with _forward_hooks(layers, bases, attach), registered(*mixing):
        yield
