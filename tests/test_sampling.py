"""Sampling as the papers sample: at least one new token, and the model's generation_config on request."""

from __future__ import annotations

import json

import torch
from transformers import GenerationConfig

from grasp_bench import models
from grasp_bench.artifacts import read_jsonl
from grasp_bench.data import load_eval, render_prompt
from grasp_bench.generate import HFGenerator, WeightPaths, model_sampling
from grasp_bench.vllm_generate import VLLMGenerator


def _tiny(tiny_cfg):
    cfg = tiny_cfg("method=base")
    tok = models.load_tokenizer(cfg.model, cfg.paths.cache)
    return cfg, tok, models.load_base(cfg.model, cfg.paths.cache), load_eval(cfg.task)["in_domain"][:2]


def test_no_completion_stops_before_its_first_token(tiny_cfg, tmp_path):
    """The greedy first token made the end-of-sequence token: min_new_tokens=1 samples another one first
    (vLLM: min_tokens=1), where plain generate would stop at once."""
    cfg, tok, model, rows = _tiny(tiny_cfg)
    enc = tok(render_prompt(tok, rows[0]["messages"]), return_tensors="pt", add_special_tokens=False)
    first = model.generate(**enc, max_new_tokens=1, do_sample=False, pad_token_id=tok.pad_token_id)[0, -1].item()
    model.generation_config.eos_token_id = first
    plain = model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert plain[0, enc["input_ids"].shape[1]:].tolist() == [first]  # what generate does without the floor
    HFGenerator(batch_size=1).run(model, tok, rows[:1], {"temperature": 0.0, "max_new_tokens": 4, "samples": 1},
                                  tmp_path / "g.jsonl", seed=0)
    [row] = read_jsonl(tmp_path / "g.jsonl")
    ids = tok(row["completion"], add_special_tokens=False)["input_ids"]
    assert ids and ids[0] != first


def test_generation_config_sampling_is_opt_in(tiny_cfg, tmp_path):
    """model-organisms-for-EM's sampling (Qwen2.5-7B-Instruct's generation_config.json: top_k 20,
    repetition_penalty 1.05) only under sampling.from_generation_config; the default is no cut, no penalty."""
    assert model_sampling(GenerationConfig(top_k=20, repetition_penalty=1.05)) == (20, 1.05)
    assert model_sampling(None) == (0, 1.0)
    cfg, tok, model, rows = _tiny(tiny_cfg)
    gen_cfg = model.generation_config  # as Qwen's generation_config.json: do_sample, top_k, repetition_penalty
    gen_cfg.do_sample, gen_cfg.top_k, gen_cfg.repetition_penalty = True, 1, 1.05  # top-1: one completion a row
    sampling = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6, "samples": 4}
    out = {}
    for flag in (False, True):
        torch.manual_seed(0)
        HFGenerator(batch_size=8).run(model, tok, rows, {**sampling, "from_generation_config": flag},
                                      tmp_path / f"{flag}.jsonl", seed=0)
        out[flag] = [(g["id"], g["completion"]) for g in read_jsonl(tmp_path / f"{flag}.jsonl")]
    per_row = lambda gens: {i: {c for j, c in gens if j == i} for i, _ in gens}
    assert all(len(s) == 1 for s in per_row(out[True]).values())  # top_k 1 from the model: one completion a row
    assert any(len(s) > 1 for s in per_row(out[False]).values())  # the model's config ignored: samples differ

    # generator=vllm reads the same file in the parent and hands the child the figures
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    spec = VLLMGenerator().spec(WeightPaths(str(model_dir)), tok, rows, {**sampling, "from_generation_config": True},
                                tmp_path / "v.jsonl", seed=0)
    assert (spec["sampling"]["top_k"], spec["sampling"]["repetition_penalty"]) == (1, 1.05)
    spec = VLLMGenerator().spec(WeightPaths(str(model_dir)), tok, rows, sampling, tmp_path / "v.jsonl", seed=0)
    assert (spec["sampling"]["top_k"], spec["sampling"]["repetition_penalty"]) == (0, 1.0)
    json.dumps(spec)
