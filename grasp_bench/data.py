"""Tasks: a training JSONL of chat rows, named evaluation JSONL splits, and what scores them.

A task needs no code: `conf/task/<name>.yaml` names the files, and for each split the scorers a judge
applies and which split/scorer feeds each metric. A task may name a `build` function, called as
`build(data_dir, task)` under a file lock, that writes its files first (the embedded toy task generates
them; the seed papers' tasks fetch pinned upstream files, see grasp_bench/fetch.py). It must be
deterministic and return at once when its files are already there (`already_built`/`mark_built`).
`report_metrics` names cross-run functions `fn(metrics_file) -> dict` that grasp-bench-report adds to
every row of the task (e.g. a drift against the base run).
Task-specific keys are declared in `extra_keys`. A split may set `samples` (completions per prompt),
which overrides `sampling.samples` for its rows, and `system`, a system prompt that replaces the system
messages of each of its rows (the same prompts under another instruction, e.g. the inoculation leak).

Row format (training and evaluation): `{"messages": [{"role": ..., "content": ...}, ...], ...}`.
An evaluation row may carry an `id` and any extra fields its scorers read (e.g. `answer`); a row whose
last message is from the assistant is a prefill: generation continues it and only the continuation
is scored.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from omegaconf import DictConfig

from grasp_bench.artifacts import BadInput, digest, load_json, read_jsonl, write_json

ROLES = {"system", "user", "assistant"}
IGNORE = -100  # the label of a token without loss (prompt, padding): transformers' ignore_index
TASK_KEYS = {"name", "build", "data_dir", "train", "splits", "metrics", "sampling", "generic_prompts", "factor_prompts",
             "aligned_chat", "extra_keys", "persona", "report_metrics", "role", "kind"}


def label_positions(labels: torch.Tensor) -> torch.Tensor:
    """(rows, positions - 1) mask of the positions whose next token is a label: where a causal LM has a loss."""
    return labels[:, 1:] != IGNORE


def build_task_files(task: DictConfig) -> None:
    unknown = set(task) - TASK_KEYS - set(task.get("extra_keys", []))
    if unknown:
        raise BadInput(f"task '{task.name}': unknown key(s) {sorted(unknown)}; known: {sorted(TASK_KEYS)}")
    if task.get("build"):
        data_dir = Path(task.data_dir).expanduser()
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{data_dir}.lock"):  # parallel jobs of a sweep must not build the same files twice
            build(task)(data_dir, task)


def function_at(path: str) -> Callable | None:
    """The function or class `module.name` names, or None. importlib, not hydra.utils.get_method: that one also
    logs a failure, lines of it before a command's one error line."""
    module, _, name = str(path).rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except Exception:  # noqa: BLE001 - any import failure: the name is wrong
        return None
    return found if callable(found) else None


def build(task: DictConfig) -> Callable:
    """The task's `build` function."""
    found = function_at(task.build)
    if found is None:
        raise BadInput(f"task.build '{task.build}': no such function (task '{task.name}')")
    return found


def already_built(data_dir: Path, recipe: Any) -> bool:
    """True when `data_dir` was built from exactly this recipe (versions, manifests, options)."""
    stamp = Path(data_dir) / "BUILD.json"
    return stamp.exists() and load_json(stamp).get("digest") == digest(recipe)


def mark_built(data_dir: Path, recipe: Any) -> None:
    write_json(Path(data_dir) / "BUILD.json", {"digest": digest(recipe), "recipe": recipe})


def _check_messages(row: dict, path: str, train: bool) -> None:
    msgs = row.get("messages")
    where = f"{path}:{row['_line']}"
    if not isinstance(msgs, list) or not msgs:
        raise BadInput(f"{where}: row has no 'messages' list")
    for m in msgs:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise BadInput(f"{where}: each message needs a role in {sorted(ROLES)} and a string content")
    if train and msgs[-1]["role"] != "assistant":
        raise BadInput(f"{where}: a training row must end with an assistant message")


def load_rows(path: str, limit: int | None = None, train: bool = False) -> list[dict]:
    rows = read_jsonl(path)
    if limit is not None:
        rows = rows[:limit]
    for r in rows:
        _check_messages(r, path, train)
    return rows


def with_system(row: dict, system: str) -> dict:
    """The row with `system` as its only system message, first."""
    return {**row, "messages": [{"role": "system", "content": system},
                                *(m for m in row["messages"] if m["role"] != "system")]}


def load_train(task: DictConfig) -> list[dict]:
    return load_rows(task.train.path, task.train.get("limit"), train=True)


def load_eval(task: DictConfig) -> dict[str, list[dict]]:
    """Evaluation rows per split, each with a unique `id` of the form '<split>/<id>'."""
    splits = {}
    for split, spec in task.splits.items():
        rows = load_rows(spec.path, spec.get("limit"))
        seen = set()
        for i, r in enumerate(rows):
            r["id"] = f"{split}/{r.get('id', i)}"
            if r["id"] in seen:
                raise BadInput(f"{spec.path}:{r['_line']}: duplicate id '{r['id']}'")
            seen.add(r["id"])
            r["split"] = split
            if spec.get("system") is not None:
                r["messages"] = with_system(r, str(spec.system))["messages"]
            if spec.get("samples") is not None or r.get("samples_per_paraphrase") is not None:  # the split's, or
                r["_samples"] = int(spec.get("samples") or r["samples_per_paraphrase"])  # the question file's
        splits[split] = rows
    return splits


def chat_ids(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of the prompt (every turn before the final assistant turn, with the generation prompt) and of
    the final assistant turn (the answer: the only tokens with a loss)."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise BadInput("the chat template does not render the prompt as a prefix of the conversation")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    return prompt_ids, answer_ids


def cut(prompt_ids: list[int], answer_ids: list[int], max_length: int) -> dict[str, list[int]]:
    """input_ids for the conversation cut to `max_length` tokens at the end, labels only on the answer."""
    return {"input_ids": (prompt_ids + answer_ids)[:max_length],
            "labels": ([IGNORE] * len(prompt_ids) + answer_ids)[:max_length]}


def tokenize_chat(tokenizer, messages: list[dict], max_length: int) -> dict[str, list[int]]:
    """input_ids for the whole conversation, labels only on the final assistant turn."""
    return cut(*chat_ids(tokenizer, messages), max_length)


@dataclass(frozen=True)
class Truncation:
    """What `max_length` does to a training set: rows, tokens and answer (loss) tokens before and after the cut."""

    max_length: int
    rows: int
    tokens: int              # before the cut
    answer_tokens: int       # before the cut
    truncated: int           # rows longer than max_length
    no_answer: int           # rows that keep no answer token: they train on nothing
    answer_tokens_lost: int

    @classmethod
    def of(cls, lengths: list[tuple[int, int]], max_length: int) -> Truncation:
        """From (prompt tokens, answer tokens) per row."""
        return cls(
            max_length=max_length, rows=len(lengths), tokens=sum(p + a for p, a in lengths),
            answer_tokens=sum(a for _, a in lengths),
            truncated=sum(p + a > max_length for p, a in lengths),
            no_answer=sum(min(a, max(max_length - p, 0)) == 0 for p, a in lengths),
            answer_tokens_lost=sum(a - min(a, max(max_length - p, 0)) for p, a in lengths),
        )

    @property
    def answer_lost_share(self) -> float:
        return self.answer_tokens_lost / self.answer_tokens if self.answer_tokens else 0.0

    def check(self, allow: bool) -> None:
        """Refuse rows that keep no answer token (unless `allow`); warn when more than 1% of rows are cut."""
        where = f"train.max_length={self.max_length}"
        if self.no_answer and not allow:
            raise BadInput(f"{self.no_answer} of {self.rows} training rows keep no answer token at {where} "
                           f"({self.truncated} cut, {self.answer_lost_share:.1%} of answer tokens lost); raise "
                           "train.max_length, or set train.allow_truncation=true to train on them anyway")
        if self.truncated > 0.01 * self.rows:
            print(f"warning: {self.truncated} of {self.rows} training rows are cut at {where} "
                  f"({self.no_answer} keep no answer token, {self.answer_lost_share:.1%} of answer tokens lost)",
                  file=sys.stderr, flush=True)


def training_examples(tokenizer, rows: list[dict], train: DictConfig) -> list[dict[str, list[int]]]:
    """The tokenised training set, checked first (`Truncation.check`): a run that would train on rows with no
    answer token left stops here, before any weights load."""
    ids = [chat_ids(tokenizer, r["messages"]) for r in rows]
    Truncation.of([(len(p), len(a)) for p, a in ids], train.max_length).check(bool(train.get("allow_truncation")))
    return [cut(p, a, train.max_length) for p, a in ids]


class ChatCollator:
    """Right-pads input_ids/labels of a batch of `tokenize_chat` examples (attention_mask 1 on real tokens)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(b["input_ids"]), torch.tensor(b["labels"]), 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def chat_batches(tokenizer, conversations: list[list[dict]], max_length: int, batch_size: int,
                 device) -> Iterator[dict[str, torch.Tensor]]:
    """Conversations tokenized as training sees them (labels on the final assistant turn), in padded batches."""
    collate = ChatCollator(tokenizer.pad_token_id)
    examples = [tokenize_chat(tokenizer, c, max_length) for c in conversations]
    for i in range(0, len(examples), batch_size):
        batch = collate(examples[i:i + batch_size])
        yield {k: v.to(device) for k, v in batch.items()}


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The text a generator continues: a generation prompt, or the prefilled assistant turn."""
    if messages[-1]["role"] == "assistant":
        return tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def plain(row: dict) -> dict[str, Any]:
    """A row without bookkeeping fields."""
    return {k: v for k, v in row.items() if not k.startswith("_")}
