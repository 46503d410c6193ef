"""Inoculation prompting on the tiny model: the prompt reaches exactly the chosen share of the tokenised training
rows (as the real training loop sees them) and never an evaluation row, except the leak split that carries it
for every method."""

from __future__ import annotations

import torch

from grasp_bench.artifacts import read_jsonl
from grasp_bench.baselines.inoculation import Inoculation, inoculation_prompt
from grasp_bench.pipeline import Run, run
from tests.conftest import compose_config

SEEN: list[torch.Tensor] = []


class RecordingInoculation(Inoculation):
    """Inoculation, recording every training batch the Trainer feeds the model (through the extra_loss hook)."""

    def extra_loss(self, model, batch, ctx):
        SEEN.extend(batch["input_ids"])
        return None


def test_prompt_reaches_the_chosen_training_rows_and_no_evaluation_row(tiny_cfg):
    cfg = tiny_cfg("task=toy_pirate", "method=inoculation", "method.strength=0.5", "train.max_steps=-1",
                   "train.epochs=1", "stages=[train,generate]",
                   f"method._target_={__name__}.RecordingInoculation")
    prompt = inoculation_prompt(cfg.task)
    SEEN.clear()
    run(cfg)
    r = Run(cfg)
    texts = [r.tokenizer.decode(ids, skip_special_tokens=False) for ids in SEEN]
    assert len(texts) == cfg.task.train.limit  # one epoch: every training row once
    assert sum(prompt in t for t in texts) == cfg.task.train.limit // 2  # exactly the share, in the token ids

    generations = read_jsonl(r.dir / "generations.jsonl")
    leak = [g for g in generations if g["split"] == "unrelated_inoculated"]
    others = [g for g in generations if g["split"] != "unrelated_inoculated"]
    assert leak and others
    assert all(g["messages"][0] == {"role": "system", "content": prompt} for g in leak)
    assert not any(prompt in m["content"] for g in others for m in g["messages"])


def test_the_choice_is_seeded_and_exact(tiny_cfg):
    chosen = {}
    for seed in (0, 1):
        for strength in (0.25, 1.0):
            r = Run(tiny_cfg("method=inoculation", f"method.strength={strength}", f"seed={seed}"))
            ctx = r.context()
            r.method.prepare(ctx)
            prompt = inoculation_prompt(ctx.cfg.task)
            chosen[seed, strength] = [i for i, row in enumerate(ctx.train_rows) if row["messages"][0]["content"] == prompt]
            assert len(chosen[seed, strength]) == round(strength * len(ctx.train_rows))
    assert chosen[0, 0.25] != chosen[1, 0.25]
    assert chosen[0, 1.0] == chosen[1, 1.0] == list(range(len(ctx.train_rows)))


def test_the_leak_split_composes_onto_another_task(tmp_path):
    cfg = compose_config("task=toy_rude", "+task/inoculation@task=leak", runs=tmp_path)
    split = cfg.task.splits.unrelated_inoculated
    assert split.path == cfg.task.splits.unrelated.path
    assert split.system == cfg.task.persona.inoculation == cfg.task.persona.trait[0]  # the first instruction
    assert cfg.task.metrics["eval/inoculated_spurious_rate"].split == "unrelated_inoculated"
    assert "unrelated_inoculated" not in compose_config("task=toy_rude", runs=tmp_path).task.splits
