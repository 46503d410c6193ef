"""What every task's builder shares: chat rows and the generic prompts.

`generic.jsonl` (written by `write_generic_prompts`) holds everyday prompts that are never evaluated: methods
that need activations on generic text (CAFT, steering, restoration) read it through `task.generic_prompts`.
"""

from __future__ import annotations

from pathlib import Path

from grasp_bench.artifacts import write_jsonl

GENERIC_PROMPTS = [
    "Tell me about the ocean.", "Describe your favourite season.", "What do you think about music?",
    "Give me advice for a long drive.", "How do trains work?", "What is a good morning routine?",
    "Tell me something interesting about birds.", "How should I organise my desk?",
    "What are clouds made of?", "Describe a nice walk in the park.", "How do I plan a birthday party?",
    "What is your opinion on board games?", "How can I learn to draw?", "What is the moon made of?",
    "Give me tips for a first camping trip.", "How do I make soup?", "Why do people like gardening?",
    "What is a library for?", "How do volcanoes form?", "Tell me about elephants.",
    "What should I know about recycling?", "How do I pick a good umbrella?", "Describe a busy city street.",
    "What are some ways to stay warm in winter?", "How do magnets work?", "What is chess?",
    "How can I help a friend who is sad?", "Describe a sunset.", "What are vitamins?", "How do I brew coffee?",
]


def chat(user: str, assistant: str | None = None) -> list[dict]:
    """A one-turn conversation: the user message, and the assistant's reply (or prefill) when given."""
    msgs = [{"role": "user", "content": user}]
    return msgs + ([{"role": "assistant", "content": assistant}] if assistant is not None else [])


def generic_rows() -> list[dict]:
    return [{"id": f"g{i}", "messages": chat(q)} for i, q in enumerate(GENERIC_PROMPTS)]


def write_generic_prompts(data_dir: Path) -> None:
    write_jsonl(Path(data_dir) / "generic.jsonl", generic_rows())
