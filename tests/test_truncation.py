"""Bad input known only at the train stage. Truncation: a run whose training rows would keep no answer token refuses
to start (exit 2, one line with the counts and the knob) before any weights load; more than 1% of rows cut is a
warning; the knob allows it. LoRA targets: a module name the built architecture lacks is refused, not skipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from grasp_bench import models
from grasp_bench.artifacts import BadInput
from grasp_bench.data import Truncation, chat_ids, load_train, training_examples
from grasp_bench.identity import run_dir
from grasp_bench.pipeline import run
from tests.conftest import REPO, TINY

# On the toy task with the tiny model's tokenizer, prompts are 37-54 tokens and answers at least 53.
NO_ANSWER_LENGTH = 45  # some prompts alone are longer: those rows keep no answer token
CUT_LENGTH = 100  # some rows are longer, every row keeps answer tokens


def test_truncation_counts():
    t = Truncation.of([(10, 5), (8, 4), (13, 2), (3, 3)], max_length=12)
    assert (t.rows, t.tokens, t.answer_tokens) == (4, 48, 14)
    assert (t.truncated, t.no_answer, t.answer_tokens_lost) == (2, 1, 3 + 2)  # rows 1 and 3 cut; row 3 keeps no answer
    assert t.answer_lost_share == pytest.approx(5 / 14)


def _toy(tiny_cfg, *overrides):
    cfg = tiny_cfg("method=sft", *overrides)
    tok = models.load_tokenizer(cfg.model, cfg.paths.cache)
    from grasp_bench.data import build_task_files

    build_task_files(cfg.task)
    rows = load_train(cfg.task)
    lengths = [tuple(map(len, chat_ids(tok, r["messages"]))) for r in rows]
    return cfg, tok, rows, lengths


def test_rows_cut_beyond_one_percent_warn_and_train(tiny_cfg, capsys):
    cfg, tok, rows, lengths = _toy(tiny_cfg, f"train.max_length={CUT_LENGTH}")
    examples = training_examples(tok, rows, cfg.train)
    cut = sum(p + a > CUT_LENGTH for p, a in lengths)
    assert cut > 0.01 * len(rows) and all(any(x != -100 for x in e["labels"]) for e in examples)
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and f"{cut} of {len(rows)} training rows are cut at train.max_length={CUT_LENGTH}" in warning[0]
    assert max(len(e["input_ids"]) for e in examples) == CUT_LENGTH


def test_rows_without_answer_tokens_refuse_before_any_weights_load(tiny_cfg, monkeypatch):
    cfg, _, rows, lengths = _toy(tiny_cfg, f"train.max_length={NO_ANSWER_LENGTH}")
    empty = sum(p >= NO_ANSWER_LENGTH for p, _ in lengths)
    assert 0 < empty < len(rows)

    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded before the truncation check")

    monkeypatch.setattr(models, "load_base", no_weights)
    with pytest.raises(BadInput, match=f"{empty} of {len(rows)} training rows keep no answer token"):
        run(cfg)
    assert not (run_dir(cfg) / "model").exists()


def test_the_refusal_is_one_line_with_the_counts_and_the_knob_exit_2(tmp_path):
    """At the train stage (it needs the tokenizer), so not in the battery: Hydra has made its output dir by then."""
    out = subprocess.run([sys.executable, "-m", "grasp_bench", *TINY, f"paths.runs={tmp_path}", "method=sft",
                          f"train.max_length={NO_ANSWER_LENGTH}"], capture_output=True, text=True, cwd=REPO, timeout=300)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1, out.stderr[-2000:]
    assert "of 24 training rows keep no answer token at train.max_length=45" in errors[0]
    assert "train.allow_truncation=true" in errors[0]
    assert not list(tmp_path.glob("**/model"))


def test_the_knob_allows_rows_without_answer_tokens(tiny_cfg):
    cfg, tok, rows, lengths = _toy(tiny_cfg, f"train.max_length={NO_ANSWER_LENGTH}", "train.allow_truncation=true")
    examples = training_examples(tok, rows, cfg.train)
    assert sum(all(x == -100 for x in e["labels"]) for e in examples) == sum(p >= NO_ANSWER_LENGTH for p, _ in lengths)


@pytest.mark.parametrize("modules", ["[q_proj,nope]", "[nope]"])  # peft itself refuses only the second
def test_a_target_module_the_model_lacks_is_one_line_naming_the_key(tiny_cfg, modules):
    """Known only once the architecture is built, so refused at the train stage, still as bad input."""
    cfg = tiny_cfg(f"model.lora.target_modules={modules}")
    base = models.load_base(cfg.model, Path(cfg.paths.cache))
    with pytest.raises(BadInput, match=r"model.lora.target_modules=\[.*'nope'\]: no module named 'nope' in LlamaForCausalLM"):
        models.add_lora(base, cfg.model, cfg.seed)
