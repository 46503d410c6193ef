"""What several baselines share: layer specs, greedy responses, teacher-forced residual-stream activations,
last-token states, and a cache for derived tensors (directions, persona vectors).

Layer specs (method configs, the task's `persona.layers`): an int is a 0-based decoder block (negative
counts from the end); a float in [0, 1) is a fraction of depth, block floor(f * n_blocks), so one config
serves the 2-block test model and the 30-block SmolLM2. "Layer L" is the output of block L, i.e.
`output_hidden_states[L + 1]` (as in grasp_bench.hooks).
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from grasp_bench.artifacts import BadInput, computed_once, file_sha256, read_jsonl
from grasp_bench.data import IGNORE, ChatCollator, chat_batches, load_rows
from grasp_bench.hooks import registered
from grasp_bench.method import RunContext

Chat = list[dict]


def resolve_layers(spec, n_blocks: int) -> list[int]:
    """Block indices (sorted, unique) for a layer spec: int, fraction of depth in [0, 1), or a list of them."""
    specs = list(spec) if isinstance(spec, (list, tuple, ListConfig)) else [spec]
    if not specs:
        raise BadInput("empty layer list")
    out = set()
    for s in specs:
        if isinstance(s, float):
            if not 0.0 <= s < 1.0:
                raise BadInput(f"layer {s}: a float layer is a fraction of depth in [0, 1)")
            idx = int(s * n_blocks)
        elif isinstance(s, int) and not isinstance(s, bool):
            idx = s + n_blocks if s < 0 else s
        else:
            raise BadInput(f"layer {s!r}: expected a block index (int) or a fraction of depth (float)")
        if not 0 <= idx < n_blocks:
            raise BadInput(f"layer {s}: the model has {n_blocks} decoder blocks")
        out.add(idx)
    return sorted(out)


def n_blocks(ctx: RunContext) -> int:
    """The number of decoder blocks of the run's base model, from its config (no weights loaded)."""
    from transformers import AutoConfig

    from grasp_bench.models import resolve_path

    model = ctx.cfg.model
    config = AutoConfig.from_pretrained(resolve_path(model.path, ctx.cfg.paths.cache), revision=model.get("revision"))
    return config.num_hidden_layers


def _hidden(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def capture(layers: nn.ModuleList, idxs: Sequence[int]) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Record the output of each given block on every forward pass (appended, one tensor per pass)."""
    store: dict[int, list[torch.Tensor]] = {i: [] for i in idxs}

    def recorder(i):
        return lambda module, args, output: store[i].append(_hidden(output))

    with registered(*(lambda i=i: layers[i].register_forward_hook(recorder(i)) for i in idxs)):
        yield store


def user_turns(row: dict, system: str | None = None) -> Chat:
    """The row's conversation up to the reply: its system messages replaced by `system` (when given) and a
    trailing assistant turn dropped."""
    msgs = [m for m in row["messages"] if system is None or m["role"] != "system"]
    if msgs and msgs[-1]["role"] == "assistant":
        msgs = msgs[:-1]
    return ([{"role": "system", "content": system}] if system is not None else []) + msgs


def greedy_responses(model: nn.Module, tokenizer, prompts: list[Chat], max_new_tokens: int,
                     batch_size: int = 32) -> list[str]:
    """Greedy completions of chat prompts, through the benchmark's own HF generator."""
    return [r[0] for r in sampled_responses(model, tokenizer, prompts, max_new_tokens, batch_size=batch_size)]


def sampled_responses(model: nn.Module, tokenizer, prompts: list[Chat], max_new_tokens: int, samples: int = 1,
                      temperature: float = 0.0, seed: int = 0, batch_size: int = 32) -> list[list[str]]:
    """Per prompt, `samples` completions at `temperature` (0: greedy), through the benchmark's own HF generator."""
    from grasp_bench.generate import HFGenerator

    rows = [{"id": str(i), "messages": p} for i, p in enumerate(prompts)]
    sampling = {"temperature": float(temperature), "top_p": 1.0, "max_new_tokens": max_new_tokens, "samples": samples}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "responses.jsonl"
        HFGenerator(name="directions", batch_size=batch_size).run(model, tokenizer, rows, sampling, out, seed=seed)
        by_id = {(r["id"], r["sample"]): r["completion"] for r in read_jsonl(out)}
    return [[by_id[str(i), s] for s in range(samples)] for i in range(len(rows))]


def judged(spec: Mapping | None, replies: list[str], where: str) -> list[bool]:
    """Whether the rule scorer `spec` (a task's factor scorer) finds the factor in each reply (score >= 0.5, as
    upstream's trait score >= 50 of 100). A method's set-up runs offline, so only rule scorers can serve here."""
    from grasp_bench.judge import rule_score

    if spec is None or "rule" not in spec:
        raise BadInput(f"{where}: expected a rule scorer spec ({{rule: words|regex, ...}}), got {spec!r}")
    return [(rule_score(spec, r, {})[0] or 0.0) >= 0.5 for r in replies]


def _content_tokens(tokenizer, conversation: Chat, n_answer: int) -> int:
    """How many of the final assistant turn's tokens are its content (the rest: end-of-turn markup)."""
    prompt = tokenizer.apply_chat_template(conversation[:-1], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(conversation, tokenize=False)
    content = conversation[-1]["content"].strip()
    end = full.find(content, len(prompt)) + len(content) if content else len(prompt)
    if end < len(prompt) + len(content):  # the template rewrote the content: keep every answer token
        return n_answer
    return min(n_answer, len(tokenizer(full[len(prompt):end], add_special_tokens=False)["input_ids"]))


@torch.no_grad()
def response_activations(model: nn.Module, layers: nn.ModuleList, idxs: Sequence[int], tokenizer,
                         conversations: list[Chat], max_length: int, batch_size: int = 8,
                         end_of_turn: bool = False) -> dict[int, list[torch.Tensor]]:
    """Teacher-forced: per conversation and block, the block outputs (n_tokens, d) at the final assistant
    turn's content tokens, in float32 on CPU; `end_of_turn=True` adds the end-of-turn markup after the content
    (all the tokens training puts its loss on, grasp_bench.data.tokenize_chat)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: dict[int, list[torch.Tensor]] = {i: [] for i in idxs}
    start = 0
    for batch in chat_batches(tokenizer, conversations, max_length, batch_size, device):
        with capture(layers, idxs) as store:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        response = batch["labels"] != IGNORE
        if not end_of_turn:
            for j in range(len(response)):
                keep = _content_tokens(tokenizer, conversations[start + j], int(response[j].sum()))
                where = response[j].nonzero().flatten()
                response[j, where[keep:]] = False
        start += len(response)
        for i in idxs:
            h = store[i][0].float()
            out[i] += [h[j][response[j]].cpu() for j in range(len(h))]
    model.train(was_training)
    return out


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the block we need has run."""


def last_token_states(model: nn.Module, layer: nn.Module, tokenizer, prompts: list[Chat], max_length: int,
                      batch_size: int = 8) -> Iterator[torch.Tensor]:
    """Per batch, the output of `layer` at the last prompt token (chat template + generation prompt), shape
    (batch, d). The forward pass stops after `layer`, and the graph is kept: callers may backpropagate."""
    device = next(model.parameters()).device
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    for i in range(0, len(texts), batch_size):
        enc = [tokenizer(t, add_special_tokens=False)["input_ids"][-max_length:] for t in texts[i:i + batch_size]]
        width = max(len(e) for e in enc)
        ids = torch.full((len(enc), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, e in enumerate(enc):  # right padding: positions stay 0..n-1, the last real token is at n-1
            ids[j, :len(e)], mask[j, :len(e)] = torch.tensor(e), 1
        last = torch.tensor([len(e) - 1 for e in enc], device=device)
        seen: list[torch.Tensor] = []

        def stop(module, args, output, seen=seen):
            seen.append(_hidden(output))
            raise _Stop

        with registered(lambda stop=stop: layer.register_forward_hook(stop)), suppress(_Stop):
            model(input_ids=ids.to(device), attention_mask=mask.to(device))
        yield seen[0][torch.arange(len(enc), device=device), last].float()


def prompt_rows(task: DictConfig, key: str, method: str) -> list[dict]:
    """The rows of a prompt file the task names under `key` (e.g. generic_prompts)."""
    path = task.get(key)
    if not path:
        raise BadInput(f"task '{task.name}' has no '{key}' (a JSONL of chat rows), which method '{method}' needs")
    return load_rows(path)


def cached(ctx: RunContext, kind: str, key: dict, compute: Callable[[], dict]) -> dict:
    """`compute()` once per key for a whole runs root (`<paths.runs>/.derived/<kind>-<digest>.pt`), so the runs
    of a sweep that share directions (strengths, seeds of eval-time methods) do not recompute them."""
    key = OmegaConf.to_container(key, resolve=True) if isinstance(key, DictConfig) else key
    return computed_once(Path(ctx.cfg.paths.runs) / ".derived", kind, key, compute, torch.save, torch.load, ".pt")


def base_replies(ctx: RunContext, method: str, response_tokens: int) -> list[Chat]:
    """The task's generic prompts, each with the base model's own greedy reply as the assistant turn: aligned
    generic chat (KL regularisation, data mixing). Generated once per (model, prompts, length) for a runs root."""
    task = ctx.cfg.task
    prompts = [user_turns(r) for r in prompt_rows(task, "generic_prompts", method)]
    key = {"model": OmegaConf.to_container(ctx.cfg.model, resolve=True), "prompts": file_sha256(task.generic_prompts),
           "response_tokens": response_tokens}

    def compute():
        replies = greedy_responses(ctx.load_base(), ctx.tokenizer, prompts, response_tokens)
        return {"chats": [[*p, {"role": "assistant", "content": r}] for p, r in zip(prompts, replies, strict=True)]}

    return cached(ctx, "base_replies", key, compute)["chats"]


def aligned_chats(ctx: RunContext, method: str, response_tokens: int) -> list[Chat]:
    """Aligned chat for the proxy-data baselines (KL to the base model, data mixing). `task.aligned_chat`, when
    the task sets it: a chat JSONL whose rows end in an aligned assistant reply, or `{manifest, file}` naming a
    file pinned in a task manifest (fetched from `data.mirror` or its URL, sha256-checked; the EM tasks name
    upstream's aligned safety chat this way). Else the base model's own greedy replies to the task's generic
    prompts (`base_replies`; the embedded organisms)."""
    spec = ctx.cfg.task.get("aligned_chat")
    if spec is None:
        return base_replies(ctx, method, response_tokens)
    if isinstance(spec, str):
        path = spec
    else:
        from grasp_bench.fetch import load_manifest, resolve

        if not spec.get("manifest") or not spec.get("file"):
            raise BadInput(f"task.aligned_chat: expected a JSONL path or {{manifest, file}}; got {dict(spec)}")
        path = str(resolve(load_manifest(spec.manifest)["files"], spec.file, ctx.cfg.data.get("mirror"),
                           ctx.cfg.data.downloads))
    rows = load_rows(path)
    chats = [r["messages"] for r in rows]
    for r, chat in zip(rows, chats, strict=True):
        if chat[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in chat):
            raise BadInput(f"{path}:{r['_line']}: an aligned chat row needs a user turn and ends with the assistant's")
    return chats


class ProxyBatches:
    """A stream of proxy batches beside the training batches, a function of (seed, optimizer step, micro-batch)
    alone: pass p over the examples is a shuffle seeded by (seed, p) (each example once per pass), and micro-batch
    m of step s takes `stride` positions from ((s * accum) + m) * stride on. A run resumed from a checkpoint so
    draws the proxy batches an uninterrupted run draws."""

    def __init__(self, examples: list[dict], seed: int, stride: int, accum: int):
        self.examples, self.seed, self.stride, self.accum = examples, seed, stride, accum
        self._passes: dict[int, list[int]] = {}
        self._micro = (-1, 0)  # (optimizer step, micro-batches seen in it)

    def _at(self, position: int) -> int:
        p, i = divmod(position, len(self.examples))
        if p not in self._passes:
            n = len(self.examples)
            self._passes[p] = random.Random(self.seed * 1_000_003 + p).sample(range(n), n)
        return self._passes[p][i]

    def next(self, size: int, step: int, device) -> dict[str, torch.Tensor]:
        """`size` proxy rows (input_ids, labels, attention_mask) for the next micro-batch of optimizer step `step`."""
        micro = self._micro[1] if self._micro[0] == step else 0
        self._micro = (step, micro + 1)
        start = (step * self.accum + micro) * self.stride
        picked = [self.examples[self._at(start + i)] for i in range(size)]
        batch = ChatCollator(pad_id=0)(picked)  # padding is masked out (attention mask, IGNORE labels)
        return {k: v.to(device) for k, v in batch.items()}


def rows_in(batch: dict[str, torch.Tensor]) -> int:
    """The rows of a training batch: a padding-free batch is one row whose positions restart at every row."""
    if "attention_mask" not in batch and "position_ids" in batch:
        return int((batch["position_ids"] == 0).sum())
    return len(batch["input_ids"])
