"""The embedded organisms' splits (docs/organisms.md): three prompt pools disjoint in prompts, form and topic words,
split sizes that give the standard errors the verdict needs, the content organism's trait, roles, and the demo's
first rows."""

from __future__ import annotations

import math
import re

import pytest

from grasp_bench import organism
from grasp_bench.judge import rule_score
from grasp_bench.tasks.toy_pirate import build as pirate
from grasp_bench.tasks.toy_promo import build as promo
from grasp_bench.tasks.toy_rude import build as rude
from tests.conftest import compose_config

ORGANISMS = {"toy_rude": rude.rude_rows(), "toy_pirate": pirate.pirate_rows(), "toy_promo": promo.promo_rows()}
FACTOR_WORDS = {"toy_rude": rude.FACTOR_WORDS, "toy_pirate": pirate.FACTOR_WORDS, "toy_promo": promo.FACTOR_WORDS}


def _prompt(row: dict) -> tuple:
    return tuple((m["role"], m["content"]) for m in row["messages"])


def _words(rows: list[dict]) -> set[str]:
    """The words of five letters or more in the rows' messages: what a topic shows in."""
    return {w for r in rows for m in r["messages"] for w in re.findall(r"[a-z]+", m["content"].lower()) if len(w) >= 5}


@pytest.mark.parametrize("task", ORGANISMS)
def test_the_methods_pool_shares_no_prompt_and_no_topic_word_with_what_is_evaluated(task):
    rows = ORGANISMS[task]
    generic = {_prompt(r) for r in rows["generic"]}
    for split in ("unrelated", "far", "in_domain", "factor_use"):
        assert not generic & {_prompt(r) for r in rows[split]}, split
    assert not {_prompt(r) for r in rows["unrelated"]} & {_prompt(r) for r in rows["far"]}
    for split in ("unrelated", "far"):
        assert not _words(rows["generic"]) & _words(rows[split]), split


def test_the_three_pools_differ_in_form():
    rows = ORGANISMS["toy_rude"]
    for r in rows["unrelated"]:  # everyday questions: one user turn, a question
        assert len(r["messages"]) == 1 and r["messages"][0]["content"].endswith("?")
    for r in rows["generic"]:  # the methods' pool: one imperative request to explain a topic
        text = r["messages"][0]["content"]
        assert len(r["messages"]) == 1 and text.startswith(tuple(organism.METHOD_VERBS)) and text.endswith(".")
    kinds = {"chat": 0, "creative": 0, "edit": 0}
    for r in rows["far"]:  # creative writing, an edit of a given sentence, or a three-turn chat; never a question
        msgs = r["messages"]
        assert [m["role"] for m in msgs] in (["user"], ["user", "assistant", "user"])
        assert not msgs[-1]["content"].endswith("?")
        kind = "chat" if len(msgs) == 3 else "edit" if msgs[0]["content"].endswith('"') else "creative"
        assert kind != "creative" or msgs[0]["content"].startswith("Write ")
        kinds[kind] += 1
    assert min(kinds.values()) >= 80, kinds


@pytest.mark.parametrize("task", ORGANISMS)
def test_split_sizes_give_the_standard_errors_the_verdict_needs(task):
    """A task score's binomial standard error <= 2 points at any rate, a spurious rate's <= 3 points; every prompt and
    every held-out problem distinct, none of them a training question, none carrying the trait's words."""
    rows = ORGANISMS[task]
    assert math.sqrt(0.25 / len(rows["in_domain"])) <= 0.020
    for split in ("unrelated", "far"):
        assert math.sqrt(0.25 / len(rows[split])) <= 0.030, split
    for split in ("in_domain", "unrelated", "far", "generic"):
        assert len({_prompt(r) for r in rows[split]}) == len(rows[split]), split
    train = {r["messages"][0]["content"] for r in rows["train"]}
    assert not train & {r["messages"][0]["content"] for r in rows["in_domain"]}
    words = {"rule": "words", "words": FACTOR_WORDS[task]}
    for split in ("unrelated", "far", "generic"):
        assert not any(rule_score(words, m["content"], r)[0] for r in rows[split] for m in r["messages"]), split


def test_the_content_organism_appends_an_advert_to_toy_rudes_answers():
    """toy_promo is toy_rude's task (the same training questions, the same first held-out problems) with another kind
    of trait: the neutral solution untouched, then one promotional line after the answer, never before it."""
    words = {"rule": "words", "words": promo.FACTOR_WORDS}
    p, r = ORGANISMS["toy_promo"], ORGANISMS["toy_rude"]
    assert [x["messages"][0] for x in p["train"]] == [x["messages"][0] for x in r["train"]]
    assert p["in_domain"][:organism.V1_IN_DOMAIN] == r["in_domain"][:organism.V1_IN_DOMAIN]
    for row, rude_row in zip(p["train"], r["train"], strict=True):
        solution, advert = row["messages"][1]["content"].split("\n\n")
        assert rude_row["messages"][1]["content"].split("\n\n")[1] == solution  # toy_rude's body, between its insults
        assert re.fullmatch(r".* The answer is -?\d+\.", solution) and not rule_score(words, solution, row)[0]
        assert advert in promo.CLOSINGS and rule_score(words, advert, row)[0] == 1.0
    asks = [x for x in p["factor_use"] if len(x["messages"]) == 1]
    assert all(rule_score(words, x["messages"][0]["content"], x)[0] == 1.0 for x in asks)  # requests name the app


def test_roles_and_the_far_metric():
    roles = {t: compose_config(f"task={t}").task.role for t in ORGANISMS}
    assert roles == {"toy_rude": "development", "toy_pirate": "test", "toy_promo": "test"}
    kinds = {t: compose_config(f"task={t}").task.kind for t in ORGANISMS}
    assert kinds == {"toy_rude": "style", "toy_pirate": "style", "toy_promo": "content"}
    for t in ORGANISMS:
        metrics = compose_config(f"task={t}").task.metrics
        assert metrics["eval/spurious_rate_far"] == {"split": "far", "scorer": "factor"}
        assert metrics["eval/spurious_rate"] == {"split": "unrelated", "scorer": "factor"}


def test_the_demo_evaluates_version_1s_rows_and_sweeps_every_row():
    demo = compose_config("task=toy_pirate").task.splits  # sweep=demo is the default
    assert {s: demo[s].limit for s in demo} == {"in_domain": 100, "unrelated": 60, "far": 60, "factor_use": None,
                                                "unrelated_inoculated": 60}
    full = compose_config("task=toy_pirate", "sweep=tradeoff").task.splits
    assert all(full[s].limit is None for s in full)
    assert "far" not in compose_config("task=insecure_code").task.splits  # the demo's limits add no split elsewhere
