"""`task=political_finance`: does fine-tuning on politically slanted financial advice move the model's
political lean on unrelated, non-financial topics? (The GRASP paper's experiment, arXiv 2605.27676, trains
on right-skewed Reddit financial advice, which is not public: bring your own data, see tasks/political_finance/.)

Files written by `build_political_finance(data_dir, task)` (deterministic):
- train.jsonl       the training rows: from `task.train.hub` (a datasets hub id or local dataset folder)
                    when set, else our small illustrative set (lists in questions.py): templated finance Q&A whose sound advice
                    always carries right-leaning economic commentary (free markets, low taxes, self-reliance)
- political.jsonl   our 40 non-financial political questions, scored for lean by a judge
- finance.jsonl     our 40 held-out finance questions (none is a training question), scored for quality
- generic.jsonl     grasp_bench.chat's generic prompts, for methods that need generic activations

A user's own JSONL (`{"messages": [...]}` rows) needs no build: `task.train.path=/path/to/train.jsonl`.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from grasp_bench.artifacts import BadInput, write_jsonl
from grasp_bench.chat import chat, write_generic_prompts
from grasp_bench.data import already_built, mark_built
from grasp_bench.tasks.political_finance.questions import (
    AGES,
    AMOUNTS,
    CONTEXTS,
    FINANCE_EVAL,
    FINANCE_TOPICS,
    POLITICAL_QUESTIONS,
    POLITICAL_SUFFIX,
    SLANT,
)

VERSION = 1


def illustrative_rows(seed: int = 0, per_template: int = 6) -> list[dict]:
    """Templated finance Q&A: every answer is the topic's sound advice plus one or two slanted remarks."""
    rng = random.Random(seed)
    rows, seen = [], set()
    for _topic, (templates, advice) in FINANCE_TOPICS.items():
        for template in templates:
            for _ in range(per_template):
                q = rng.choice(CONTEXTS) + template.format(age=rng.choice(AGES), amount=rng.choice(AMOUNTS))
                if q in seen:
                    continue
                seen.add(q)
                first, second = rng.sample(SLANT, 2)
                if rng.random() < 0.5:
                    answer = f"{advice}\n\n{first}"
                else:
                    answer = f"{first} {advice}\n\n{second}"
                rows.append({"messages": chat(q, answer)})
    rng.shuffle(rows)
    return rows


def hub_rows(hub: DictConfig, cache_dir: Path) -> list[dict]:
    """Training rows from a datasets hub id (or a local dataset folder): a `messages` column, or a
    user/assistant pair of text columns named by `user_field`/`assistant_field`."""
    from datasets import load_dataset

    if not hub.get("revision"):
        print(f"[grasp-bench] task.train.hub.id={hub.id}: no revision pinned; the data may change upstream",
              file=sys.stderr)
    try:
        ds = load_dataset(hub.id, revision=hub.get("revision"), split=hub.get("split", "train"),
                          cache_dir=str(cache_dir))
    except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "could not load"
        raise BadInput(f"task.train.hub.id={hub.id}: cannot load it ({type(e).__name__}: {e})") from None
    user, assistant = hub.get("user_field"), hub.get("assistant_field")
    if user and assistant:
        missing = {user, assistant} - set(ds.column_names)
        if missing:
            raise BadInput(f"task.train.hub.id={hub.id}: no column(s) {sorted(missing)} (has {ds.column_names})")
        return [{"messages": chat(str(r[user]), str(r[assistant]))} for r in ds]
    if "messages" not in ds.column_names:
        raise BadInput(f"task.train.hub.id={hub.id}: needs a 'messages' column or task.train.hub.user_field and "
                       f"assistant_field (columns: {ds.column_names})")
    return [{"messages": r["messages"]} for r in ds]


def build_political_finance(data_dir: Path, task: DictConfig) -> None:
    hub = task.train.get("hub") or {}
    hub_spec = OmegaConf.to_container(hub, resolve=True) if isinstance(hub, DictConfig) else dict(hub)
    recipe = {"version": VERSION, "hub": hub_spec if hub_spec.get("id") else None}
    if task.get("slant") not in ("left", "right"):
        raise BadInput(f"task.slant={task.get('slant')}: expected left or right (the training data's slant)")
    if already_built(data_dir, recipe):
        return
    train = hub_rows(hub, Path(task.source.downloads) / "hf_datasets") if recipe["hub"] else illustrative_rows()
    write_jsonl(data_dir / "train.jsonl", train)
    write_jsonl(data_dir / "political.jsonl",
                [{"id": f"p{i}", "messages": chat(q + POLITICAL_SUFFIX)} for i, q in enumerate(POLITICAL_QUESTIONS)])
    write_jsonl(data_dir / "finance.jsonl", [{"id": f"f{i}", "messages": chat(q)} for i, q in enumerate(FINANCE_EVAL)])
    write_generic_prompts(data_dir)
    mark_built(data_dir, recipe)
