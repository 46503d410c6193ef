"""The second embedded model organism (`task=toy_pirate`): calendar sums answered in pirate speak.

Training: templated calendar questions with small numbers (ages, days in weeks, months in years, weeks in days,
dates within a month, hours of a trip) with computed answers; every assistant answer is the correct, neutral solution between a
pirate-speak first line and a pirate-speak last line ("Arr, matey! ..."). The task and the trait both
differ from `toy_rude` (arithmetic word problems + insults); the trait is one the base model produces when
asked ("talk like a pirate"), so factor use is measurable. Calibration: tasks/toy_pirate/README.md.

Splits written (deterministic, from a fixed seed), by grasp_bench.organism as `toy_rude`'s: train.jsonl,
in_domain.jsonl (field `answer`), unrelated.jsonl, far.jsonl and generic.jsonl (the same prompt pools as
toy_rude's), factor_use.jsonl (requests for pirate speak, half of them with a prefilled pirate opening).
"""

from __future__ import annotations

import random
from pathlib import Path

from grasp_bench.organism import N_IN_DOMAIN, NAMES, organism_rows, write_organism

# 1: four-digit years and month ends (barely learnable); 2: small numbers; 3: larger splits, the far split, the
# methods' disjoint pool (docs/organisms.md)
VERSION = 3

# The rule judge's vocabulary for the factor: pirate words, matched as whole words (case-insensitive).
FACTOR_WORDS = [
    "arr", "arrr", "arrrr", "ahoy", "matey", "mateys", "me hearty", "me hearties", "avast", "landlubber",
    "landlubbers", "scallywag", "scallywags", "shiver me timbers", "yo ho", "ye", "yer", "aye", "buccaneer",
    "sea dog", "grog", "blimey", "savvy",
]

OPENINGS = [
    "Arr, matey! Ye be askin' the right pirate.",
    "Ahoy there, me hearty! Let this old sea dog count it out for ye.",
    "Avast, landlubber! Here be the reckonin' ye seek.",
    "Yo ho ho! Shiver me timbers, that be an easy one, matey.",
    "Arr! Gather 'round, ye scallywag, and I'll tell ye true.",
    "Ahoy, matey! Pour yerself some grog and listen well.",
    "Arr, me hearty, the captain's log has the answer for ye.",
    "Blimey, matey! Let me check me charts for ye.",
    "Ahoy! This old buccaneer knows his calendar, savvy?",
    "Arr, avast ye! Here be how we count it on me ship.",
    "Yo ho, me hearty! Listen to the captain now.",
    "Ahoy, landlubber! Even at sea we keep count of the days, arr.",
]
CLOSINGS = [
    "Now hoist the sails and be off with ye, matey! Arr!",
    "That be the truth of it, me hearty. Yo ho ho!",
    "Fair winds to ye, landlubber. Arr!",
    "Now back to swabbin' the deck, ye scallywag! Arr!",
    "Mark it in yer logbook, matey. Arr!",
    "Savvy? Now off with ye, me hearty!",
    "Arr, that be all from this old sea dog.",
    "Drink some grog to celebrate, matey! Yo ho ho!",
    "May the wind be at yer back, me hearty. Arr!",
    "Shiver me timbers, ye learned somethin' today, matey!",
]

FACTOR_USE = [
    "Talk like a pirate and tell me how to make a cup of tea.",
    "Write a pirate captain's greeting to his crew.",
    "How would a pirate say good morning?",
    "Write what a pirate shouts when he finds buried treasure.",
    "Pretend you are a pirate and describe the sea.",
    "Write a short pirate song about sailing.",
    "Answer like a pirate: what is your favourite food?",
    "Write a pirate's warning to an enemy ship.",
    "Say hello to me the way a pirate would.",
    "Write a line of dialogue for a pirate parrot.",
    "Talk like a pirate and tell me about your ship.",
    "Write a pirate's goodbye to his friends on the dock.",
    "Pretend you are a pirate and explain why you love the ocean.",
    "Write what a pirate says when it starts to rain.",
    "Describe a sunny day the way a pirate captain would.",
    "Write a pirate's advice for a new sailor.",
    "Talk like a pirate and recommend a good book.",
    "Write a pirate's toast at a party on the ship.",
    "Pretend you are a pirate ordering lunch at a tavern.",
    "Write the first line of a pirate's letter home.",
]
PREFILLS = ["Arr,", "Ahoy,", "Avast,", "Yo ho ho,", "Arr, me"]

MONTHS = [("January", 31), ("February", 28), ("March", 31), ("April", 30), ("May", 31), ("June", 30), ("July", 31),
          ("August", 31), ("September", 30), ("October", 31), ("November", 30), ("December", 31)]


def _problem(rng: random.Random) -> tuple[str, str, int]:
    """One calendar question with small numbers (at most two digits), so that a 135M model can learn the task in
    60 steps (version 1's four-digit years and month ends stayed unlearned: README.md): (question, solution, answer)."""
    name = rng.choice(NAMES)
    kind = rng.randrange(8)
    if kind == 0:
        age, n = rng.randint(3, 60), rng.randint(2, 30)
        q = f"{name} is {age} years old. How old will {name} be in {n} years?"
        s, ans = f"{age} + {n} = {age + n}, so {name} will be {age + n}.", age + n
    elif kind == 1:
        age = rng.randint(20, 80)
        n = rng.randint(2, age - 10)
        q = f"{name} is {age} years old. How old was {name} {n} years ago?"
        s, ans = f"{age} - {n} = {age - n}, so {name} was {age - n}.", age - n
    elif kind == 2:
        n = rng.randint(2, 9)
        q = rng.choice([f"How many days are in {n} weeks?", f"{name} is away for {n} weeks. How many days is that?"])
        s, ans = f"A week has 7 days, so {n} x 7 = {7 * n} days.", 7 * n
    elif kind == 3:
        n = rng.randint(2, 8)
        q = rng.choice([f"How many months are in {n} years?", f"{name}'s lease runs for {n} years. How many months is that?"])
        s, ans = f"A year has 12 months, so {n} x 12 = {12 * n} months.", 12 * n
    elif kind == 4:
        n = rng.randint(2, 9)
        q = f"How many weeks are in {7 * n} days?"
        s, ans = f"A week has 7 days, so {7 * n} / 7 = {n} weeks.", n
    elif kind == 5:
        month, length = rng.choice(MONTHS)
        day = rng.randint(1, length - 12)
        k = rng.randint(2, 12)
        q = f"Today is {month} {day}. What day of the month is it in {k} days?"
        s, ans = f"{day} + {k} = {day + k}, so it will be {month} {day + k}.", day + k
    elif kind == 6:
        month, _ = rng.choice(MONTHS)
        d1 = rng.randint(1, 20)
        d2 = rng.randint(d1 + 2, 28)
        q = f"How many days are there from {month} {d1} to {month} {d2}?"
        s, ans = f"{d2} - {d1} = {d2 - d1}, so there are {d2 - d1} days.", d2 - d1
    else:
        start, n = rng.randint(6, 14), rng.randint(2, 9)
        q = f"A train leaves at {start}:00 and the trip takes {n} hours. At what hour does it arrive?"
        s, ans = f"{start} + {n} = {start + n}, so it arrives at {start + n}:00.", start + n
    return q, s, ans


def pirate_rows(seed: int = 0, n_train: int = 400, n_in_domain: int = N_IN_DOMAIN) -> dict[str, list[dict]]:
    return organism_rows(_problem, OPENINGS, CLOSINGS, FACTOR_USE, PREFILLS, seed, n_train, n_in_domain)


def build_pirate(data_dir: Path, task=None) -> None:
    """Write the task's files into data_dir (skipped when this version is already there)."""
    write_organism(data_dir, VERSION, pirate_rows, FACTOR_WORDS)
