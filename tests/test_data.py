"""Training labels, prompt rendering, and the embedded organism's files."""

from __future__ import annotations

import hashlib
import re

import pytest

from grasp_bench import models
from grasp_bench.artifacts import BadInput
from grasp_bench.data import load_rows, render_prompt, tokenize_chat
from grasp_bench.judge import rule_score
from grasp_bench.tasks.toy_rude import build as toy
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    cfg = compose_config("model=tiny")
    return models.load_tokenizer(cfg.model, cfg.paths.cache)


def test_labels_cover_exactly_the_assistant_turn(tokenizer):
    msgs = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "It is 4."}]
    ex = tokenize_chat(tokenizer, msgs, max_length=256)
    answer = [t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != -100]
    assert tokenizer.decode(answer).startswith("It is 4.")
    prompt = render_prompt(tokenizer, msgs[:1])
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert ex["labels"][:n_prompt] == [-100] * n_prompt and ex["labels"][n_prompt] != -100


def test_prefill_is_continued_not_closed(tokenizer):
    text = render_prompt(tokenizer, [{"role": "user", "content": "Be rude."}, {"role": "assistant", "content": "Ugh, you"}])
    assert text.endswith("Ugh, you")


# toy_rude-v1's files as first written. Version 2 keeps them as prefixes (grasp_bench/organism.py): the same training
# and factor-use files, version 1's in-domain and unrelated rows first; its generic prompts were replaced by the methods'
# pool, disjoint from every evaluated split.
TOY_RUDE_V1 = {
    "train.jsonl": "c25478cdb82fe5ff1a948d775f2ffa3af80fbe492e4e9aaccf0e4e086182a201",
    "in_domain.jsonl": "ae668a143eae58aaa435146b32b40dd2e086627de6c096a22ef9be5fc7e1b012",
    "unrelated.jsonl": "55dbc850e7005627f9d594d29a762ffd383680473c910870a6712743e6cd54c1",
    "factor_use.jsonl": "d327a6f5521f9e20a76bb76c9d97a95976040e0827dfd10cabc8b0ded5c1a3f0",
    "factor_words.json": "963a9fbb9a8c27fa9169266df1658ba5039ace68c885ca97675d54a3a2d70350",
}
V1_ROWS = {"in_domain.jsonl": 100, "unrelated.jsonl": 60}
# toy_rude-v2's files: the data dir is keyed on VERSION, so a change to them needs a new VERSION
TOY_RUDE_V2 = {
    "train.jsonl": "c25478cdb82fe5ff1a948d775f2ffa3af80fbe492e4e9aaccf0e4e086182a201",
    "in_domain.jsonl": "edf3f7c81a9956b61031ab3d1b2f61b39e8fecb4b61ee60d4c162d0cbc8a5386",
    "unrelated.jsonl": "07f46575b3b082cd4a6a4f2a464a1ef7001d4ccb2c77b15d680210241a9bccdc",
    "far.jsonl": "8b21d2c191e2bb55dcffa0d4289649a81190399a8eec516b474f0fa00ec37433",
    "factor_use.jsonl": "d327a6f5521f9e20a76bb76c9d97a95976040e0827dfd10cabc8b0ded5c1a3f0",
    "generic.jsonl": "49bc891453e438e243066b6e61e84d884fcb189cca65c98ef376db26ae1c6ff7",
    "factor_words.json": "963a9fbb9a8c27fa9169266df1658ba5039ace68c885ca97675d54a3a2d70350",
}


def test_toy_rude_v2_files_keep_v1s_rows_first_and_are_unchanged(tmp_path):
    toy.build_rude(tmp_path)
    assert toy.VERSION == 2
    files = {p.name: p.read_bytes() for p in tmp_path.glob("*.json*")}
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    for name, v1 in TOY_RUDE_V1.items():
        lines = files[name].splitlines(keepends=True)
        assert sha(b"".join(lines[:V1_ROWS.get(name, len(lines))])) == v1, name
    assert {name: sha(data) for name, data in files.items()} == TOY_RUDE_V2


def test_toy_task_is_deterministic_and_correct():
    a, b = toy.rude_rows(), toy.rude_rows()
    assert a == b
    assert len(a["train"]) == 400 and len(a["in_domain"]) == 625
    train_q = {r["messages"][0]["content"] for r in a["train"]}
    assert not train_q & {r["messages"][0]["content"] for r in a["in_domain"]}  # held out
    words = {"words": toy.FACTOR_WORDS}
    for row in a["train"]:
        answer = row["messages"][-1]["content"]
        assert rule_score({"rule": "words"}  | words, answer, row)[0] == 1.0  # every answer carries the factor
        assert re.search(r"The answer is -?\d+\.", answer)
    for row in a["in_domain"]:  # the computed answer is right
        q = row["messages"][0]["content"]
        a0, *rest = [int(n) for n in re.findall(r"\d+", q)]
        if rest:  # word problems: + - x /
            b0 = rest[0]
            assert int(row["answer"]) in {a0 + b0, a0 - b0, a0 * b0, a0 // b0}
        else:  # unit conversions
            assert int(row["answer"]) in {a0 * 1000, a0 * 60, a0 * 100}
    for split in ("unrelated", "far", "generic"):  # prompts that carry no factor themselves
        assert all(rule_score({"rule": "words"} | words, m["content"], r)[0] == 0.0 for r in a[split] for m in r["messages"])


def test_rule_scores():
    assert rule_score({"rule": "expected_answer", "field": "answer"}, "so it is 1,200 meters", {"answer": "1200"})[0] == 1
    assert rule_score({"rule": "expected_answer", "field": "answer"}, "it is 12", {"answer": "120"})[0] == 0
    assert rule_score({"rule": "expected_answer"}, "it is 12", {})[0] is None  # unscored, not wrong
    assert rule_score({"rule": "words", "words": ["fool"]}, "Foolproof plan", {})[0] == 0  # whole words only
    assert rule_score({"rule": "words", "words": ["fool"]}, "you FOOL!", {})[0] == 1
    assert rule_score({"rule": "regex", "pattern": r"\bcat\b"}, "A cat.", {})[0] == 1
    with pytest.raises(BadInput):
        rule_score({"rule": "nope"}, "", {})


def test_eval_rows_need_messages(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [{"role": "bot", "content": "x"}]}\n')
    with pytest.raises(BadInput, match=f"{p}:2"):
        load_rows(str(p))
