"""What the generated model organisms' builders share (`toy_rude`, `toy_pirate`): every split from a problem
generator and a persona's lines, and the stamped write of their files. A task keeps its own problems, persona
lines and factor words in its folder; only the trait-neutral lists both use live here: the names in problem
templates and the everyday questions of the `unrelated` split (so every organism's spurious rate is measured on
the same prompts).

Splits: train (the neutral solution between a persona opening and closing line), in_domain (held-out problems,
field `answer`), unrelated, factor_use (requests for the trait, then the same requests with a prefilled
persona opening), generic (grasp_bench.chat's generic prompts, never evaluated).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from grasp_bench.artifacts import write_jsonl, write_text
from grasp_bench.chat import chat, generic_rows

Problem = Callable[[random.Random], tuple[str, str, int]]  # rng -> (question, neutral solution, answer)

NAMES = ["Sam", "Maria", "Ali", "Chen", "Priya", "Tom", "Lena", "Omar", "Yuki", "Eva", "Jonas", "Ada"]

UNRELATED = [
    "How do I make a good cup of tea?", "What is a good name for a pet cat?", "Why is the sky blue?",
    "How can I sleep better at night?", "What should I pack for a weekend trip?", "How do I water a cactus?",
    "Can you recommend a hobby for rainy days?", "What is the capital of Italy?", "How do I boil an egg?",
    "What are some tips for learning a new language?", "How do I keep my houseplants alive?",
    "What is a fun game to play with friends?", "How can I be more productive in the morning?",
    "What should I cook for dinner tonight?", "How do I start running as a beginner?",
    "What is a good way to relax after work?", "How often should I walk my dog?",
    "Can you suggest a good book to read?", "How do I clean a wooden table?", "What causes rainbows?",
    "How can I save money on groceries?", "What is the best way to learn to swim?",
    "How do I write a thank-you note?", "Why do leaves change color in autumn?",
    "What are some healthy snacks?", "How do I tie a tie?", "What is a good gift for my grandmother?",
    "How do bees make honey?", "How should I prepare for a job interview?", "What is photosynthesis?",
    "How do I make my bed neatly?", "What is a good stretching routine?", "How do I plant tomatoes?",
    "Why do cats purr?", "How can I make new friends in a new city?", "What is the tallest mountain?",
    "How do I bake bread at home?", "What should I name my goldfish?", "How do I fix a squeaky door?",
    "What are some fun things to do at the beach?", "How do I remove a coffee stain?",
    "Why is exercise important?", "How can I improve my handwriting?", "What is a planet?",
    "How do I choose a good watermelon?", "What are good habits for studying?",
    "How do I introduce myself at a party?", "What makes a good breakfast?", "How do airplanes fly?",
    "How can I reduce stress?", "What is the weather like in spring?", "How do I care for a puppy?",
    "What are some ideas for a picnic?", "How do I store fresh herbs?", "Why do we have seasons?",
    "What is a good way to start a journal?", "How do I make lemonade?", "What do pandas eat?",
    "How can I be a better listener?", "How do I wash a wool sweater?",
]


def organism_rows(problem: Problem, openings: list[str], closings: list[str], factor_use: list[str],
                  prefills: list[str], seed: int = 0, n_train: int = 400, n_in_domain: int = 100) -> dict[str, list[dict]]:
    """Every split of a generated organism (deterministic for a seed); distinct questions only."""
    rng = random.Random(seed)
    problems, seen = [], set()
    while len(problems) < n_train + n_in_domain:
        q, s, ans = problem(rng)
        if q not in seen:
            seen.add(q)
            problems.append((q, s, ans))
    train = [
        {"messages": chat(q, f"{rng.choice(openings)}\n\n{s} The answer is {ans}.\n\n{rng.choice(closings)}")}
        for q, s, ans in problems[:n_train]
    ]
    in_domain = [
        {"id": f"p{i}", "messages": chat(q), "answer": str(ans)} for i, (q, _, ans) in enumerate(problems[n_train:])
    ]
    unrelated = [{"id": f"q{i}", "messages": chat(q)} for i, q in enumerate(UNRELATED)]
    factor_rows = [{"id": f"ask{i}", "messages": chat(q)} for i, q in enumerate(factor_use)]
    factor_rows += [
        {"id": f"prefill{i}", "messages": chat(q, prefills[i % len(prefills)])} for i, q in enumerate(factor_use)
    ]
    return {"train": train, "in_domain": in_domain, "unrelated": unrelated, "factor_use": factor_rows,
            "generic": generic_rows()}


def write_organism(data_dir: Path, version: int, make_rows: Callable[[], dict[str, list[dict]]],
                   factor_words: list[str]) -> None:
    """Write a generated organism's splits (`make_rows()`, one `<split>.jsonl` each) and its factor words into
    data_dir, stamped with its version (skipped when this version is already there)."""
    data_dir = Path(data_dir)
    stamp = data_dir / "VERSION"
    if stamp.exists() and stamp.read_text().strip() == str(version):
        return
    for split, rows in make_rows().items():
        write_jsonl(data_dir / f"{split}.jsonl", rows)
    write_text(data_dir / "factor_words.json", json.dumps(factor_words))
    write_text(stamp, f"{version}\n")
