"""Tasks: a training JSONL of chat rows, named evaluation JSONL splits, and what scores them.

A task needs no code: `conf/task/<name>.yaml` names the files, and for each split the scorers a judge
applies and which split/scorer feeds each metric. A task may name a `build` function, called as
`build(data_dir, task)` under a file lock, that writes its files first (the embedded toy task generates
them; the seed papers' tasks fetch pinned upstream files, see grasp_bench/fetch.py). It must be
deterministic and return at once when its files are already there (`already_built`/`mark_built`).
Task-specific keys are declared in `extra_keys`. A split may set `samples` (completions per prompt),
which overrides `sampling.samples` for its rows, and `system`, a system prompt that replaces the system
messages of each of its rows (the same prompts under another instruction, e.g. the inoculation leak).

Row format (training and evaluation): `{"messages": [{"role": ..., "content": ...}, ...], ...}`.
An evaluation row may carry an `id` and any extra fields its scorers read (e.g. `answer`); a row whose
last message is from the assistant is a prefill: generation continues it and only the continuation
is scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra.utils
from filelock import FileLock
from omegaconf import DictConfig

from grasp_bench.artifacts import BadInput, digest, load_json, read_jsonl, write_json

ROLES = {"system", "user", "assistant"}
TASK_KEYS = {"name", "build", "data_dir", "train", "splits", "metrics", "sampling", "generic_prompts", "factor_prompts",
             "extra_keys", "persona"}


def build_task_files(task: DictConfig) -> None:
    unknown = set(task) - TASK_KEYS - set(task.get("extra_keys", []))
    if unknown:
        raise BadInput(f"task '{task.name}': unknown key(s) {sorted(unknown)}; known: {sorted(TASK_KEYS)}")
    if task.get("build"):
        data_dir = Path(task.data_dir).expanduser()
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{data_dir}.lock"):  # parallel jobs of a sweep must not build the same files twice
            hydra.utils.get_method(task.build)(data_dir, task)


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
                r["messages"] = [{"role": "system", "content": str(spec.system)},
                                 *(m for m in r["messages"] if m["role"] != "system")]
            if spec.get("samples") is not None:
                r["_samples"] = int(spec.samples)
        splits[split] = rows
    return splits


def tokenize_chat(tokenizer, messages: list[dict], max_length: int) -> dict[str, list[int]]:
    """input_ids for the whole conversation, labels only on the final assistant turn."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise BadInput("the chat template does not render the prompt as a prefix of the conversation")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:max_length]
    return {"input_ids": ids, "labels": labels}


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The text a generator continues: a generation prompt, or the prefilled assistant turn."""
    if messages[-1]["role"] == "assistant":
        return tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def plain(row: dict) -> dict[str, Any]:
    """A row without bookkeeping fields."""
    return {k: v for k, v in row.items() if not k.startswith("_")}
