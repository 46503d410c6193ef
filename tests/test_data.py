"""Training labels, prompt rendering, and the embedded organism's files."""

from __future__ import annotations

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


def test_toy_task_is_deterministic_and_correct():
    a, b = toy.rude_rows(), toy.rude_rows()
    assert a == b
    assert len(a["train"]) == 400 and len(a["in_domain"]) == 100
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
    for split in ("unrelated", "generic"):  # prompts that carry no factor themselves
        assert all(rule_score({"rule": "words"} | words, r["messages"][0]["content"], r)[0] == 0.0 for r in a[split])


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
