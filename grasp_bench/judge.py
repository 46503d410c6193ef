"""Judges score generations; they never generate. One judgment row per (generation, scorer).

A task names, per split, its scorers: `{rule: expected_answer | words | regex, ...}` specs are scored
exactly by `RuleJudge`. A score is a float, or None when the judge could not score the row ("unscored":
counted, never dropped).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from itertools import groupby
from pathlib import Path
from typing import Any, ClassVar

from tqdm.auto import tqdm

from grasp_bench.artifacts import BadInput, PartialJsonl

Job = tuple[dict, str, Mapping]  # (generation, scorer name, scorer spec)


@cache
def _word_pattern(words: tuple[str, ...]) -> re.Pattern:
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in words) + r")(?![\w-])", re.IGNORECASE)


def _words(spec: Mapping) -> tuple[str, ...]:
    if "words_file" in spec:
        path = Path(spec["words_file"])
        if not path.is_file():
            raise BadInput(f"{path}: words_file not found")
        try:
            words = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadInput(f"{path}: words_file is not a UTF-8 JSON list of words ({e})") from None
        where = str(path)
    else:
        words, where = spec.get("words"), "scorer key 'words'"
    if not isinstance(words, (list, tuple)) or not words or not all(isinstance(w, str) and w for w in words):
        raise BadInput(f"{where}: expected a non-empty list of words (strings)")
    return tuple(words)


RULES = ("expected_answer", "words", "regex")


def check_rule(spec: Mapping) -> None:
    """Everything a rule scorer reads, before any generation: its word list, its pattern."""
    rule = spec["rule"]
    if rule not in RULES:
        raise BadInput(f"unknown rule '{rule}' (known: {', '.join(RULES)})")
    if rule == "words":
        _words(spec)
    elif rule == "regex":
        try:
            re.compile(spec.get("pattern"))
        except (re.error, TypeError) as e:
            raise BadInput(f"regex scorer pattern {spec.get('pattern')!r}: {e}") from None


def rule_score(spec: Mapping, completion: str, row: Mapping) -> tuple[float | None, Any]:
    """(score, evidence) for one rule spec; None when the row lacks what the rule needs."""
    rule = spec["rule"]
    if rule == "expected_answer":
        expected = row.get(spec.get("field", "answer"))
        if expected is None:
            return None, "no expected answer in row"
        found = re.findall(r"-?\d[\d,]*(?:\.\d+)?", completion)
        numbers = {n.replace(",", "") for n in found}
        return float(str(expected) in numbers), sorted(numbers)[:10]
    if rule == "words":
        hit = _word_pattern(_words(spec)).search(completion)
        return float(hit is not None), hit.group(0) if hit else None
    if rule == "regex":
        hit = re.search(spec["pattern"], completion, flags=re.IGNORECASE | re.DOTALL)
        return float(hit is not None), hit.group(0) if hit else None
    raise BadInput(f"unknown rule '{rule}' (known: {', '.join(RULES)})")


class Judge:
    """Base class: subclasses implement `score(spec, generation) -> (score, raw)`, or `judged` for batched scoring."""

    name = "judge"
    operational: ClassVar[frozenset[str]] = frozenset()  # settings outside the judge stage's identity (protocols.Judge)

    def can_score(self, spec: Mapping) -> bool:
        return False

    def score(self, spec: Mapping, gen: Mapping) -> tuple[float | None, Any]:
        raise NotImplementedError

    def check(self, scorers: Mapping[str, Mapping[str, Mapping]]) -> None:
        for split, specs in scorers.items():
            for scorer, spec in specs.items():
                if not self.can_score(spec):
                    raise BadInput(f"judge '{self.name}' cannot score task split '{split}' scorer '{scorer}' ({dict(spec)})")
                if "rule" in spec:
                    try:
                        check_rule(spec)
                    except BadInput as e:
                        raise BadInput(f"task split '{split}' scorer '{scorer}': {e}") from None

    def judged(self, jobs: list[Job]) -> Iterator[list[tuple[Job, float | None, Any]]]:
        """(job, score, raw) for every job, in chunks that are written as they come (one chunk per generation)."""
        for _, chunk in groupby(tqdm(jobs, desc=f"judge:{self.name}", unit="row", leave=False), key=lambda j: id(j[0])):
            yield [(job, *self.score(job[2], job[0])) for job in chunk]

    def run(self, generations: Iterable[dict], scorers: Mapping[str, Mapping[str, Mapping]], out: Path) -> None:
        """Score every generation with its split's scorers into `out` (resumable: rows already there are kept)."""
        self.check(scorers)
        sink = PartialJsonl(out)
        done = {(r["id"], r["sample"], r["scorer"]) for r in sink.done()}
        jobs = [(gen, scorer, spec) for gen in generations for scorer, spec in scorers[gen["split"]].items()
                if (gen["id"], gen["sample"], scorer) not in done]
        for chunk in self.judged(jobs):
            sink.append({"id": gen["id"], "split": gen["split"], "sample": gen["sample"], "scorer": scorer,
                         "score": score, "raw": raw, "judge": self.name} for (gen, scorer, _), score, raw in chunk)
        sink.finish()


class RuleJudge(Judge):
    """Exact rule scoring (regex, word lists, expected answers): deterministic and free."""

    def __init__(self, name: str = "rule"):
        self.name = name

    def can_score(self, spec: Mapping) -> bool:
        return "rule" in spec

    def score(self, spec: Mapping, gen: Mapping) -> tuple[float | None, Any]:
        return rule_score(spec, gen["completion"], gen)
