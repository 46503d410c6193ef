"""`grasp-bench-plan`: the jobs a run would do, their costs checked against the real pipeline and model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from grasp_bench import models
from grasp_bench.artifacts import load_json
from grasp_bench.data import Truncation, load_train, tokenize_chat
from grasp_bench.device import resolve_batching
from grasp_bench.identity import run_dir
from grasp_bench.pipeline import run
from grasp_bench.plan import EMBEDDED, _lengths, expand, main, memory, plan_job
from tests.conftest import CONF, REPO, TINY

MIRROR = Path(os.environ.get("GRASP_BENCH_MIRROR") or REPO.parent / "shared" / "data" / "emergent_misalignment")


def _jobs(*overrides: str, multirun: bool = False, runs: Path) -> list:
    return expand([*overrides, f"paths.runs={runs}"], multirun)


def test_sweeps_expand_to_the_jobs_a_run_would_do(runs):
    jobs = _jobs("method=sft,grasp", "seed=0,1", multirun=True, runs=runs)
    assert sorted((j.method.name, j.seed) for j in jobs) == [("grasp", 0), ("grasp", 1), ("sft", 0), ("sft", 1)]
    assert [j.method.name for j in _jobs(runs=runs)] == ["base", "sft", "grasp"]  # no arguments: sweep=demo
    assert len(_jobs("sweep=none", runs=runs)) == 1
    # sweep=tradeoff uses the method_grid sweeper: each method over its own grid
    grid = OmegaConf.load(CONF / "method" / "grasp.yaml").grid
    jobs = _jobs("sweep=tradeoff", "method=sft,grasp", "seed=0", runs=runs)
    assert sorted(float(j.method.strength) for j in jobs if j.method.name == "grasp") == sorted(grid)
    assert [j.method.name for j in jobs].count("sft") == 1


def test_train_figures_match_the_real_run(tiny_cfg):
    overrides = ("method=sft", "train.max_steps=-1", "train.epochs=1", "task.train.limit=10", "train.grad_accum=2")
    cfg = tiny_cfg(*overrides)
    plan = plan_job(cfg)
    assert plan["stages"] == {s: "to run" for s in ("train", "generate", "judge", "metrics")}
    tok = models.load_tokenizer(cfg.model, cfg.paths.cache)
    examples = [tokenize_chat(tok, r["messages"], cfg.train.max_length) for r in load_train(cfg.task)]
    t = plan["train"]
    assert (t["rows"], t["tokens"]) == (10, sum(len(e["input_ids"]) for e in examples))
    assert t["answer_tokens"] == sum(x != -100 for e in examples for x in e["labels"])
    assert t["no_answer"] == t["truncated"] == 0

    run(cfg)
    assert t["steps"] == load_json(run_dir(cfg) / "stages" / "train.json")["steps"] == 2  # 3 batches of 4, 2 per step
    assert set(plan_job(cfg)["stages"].values()) == {"done, skipped"}
    conflict = plan_job(tiny_cfg(*overrides, "train.lr=1e-3"))["stages"]
    assert conflict["train"].startswith("CONFLICT") and "train.lr" in conflict["train"]


def test_memory_formula_counts_the_real_parameters(tiny_cfg):
    from peft import get_peft_model

    cfg = tiny_cfg("method=sft")
    base = models.load_base(cfg.model, cfg.paths.cache)
    arch = base.config.to_dict()
    est = memory(arch, cfg.model, cfg.train, longest_row=100)
    assert est["params"] == sum(p.numel() for p in base.parameters())
    lora = get_peft_model(base, models.lora_config(cfg.model))
    assert est["lora_params"] == sum(p.numel() for p in lora.parameters() if p.requires_grad)
    # Qwen2.5-32B's hub config.json (q/k/v biases, untied embeddings): 32,763,876,352 parameters
    qwen = {"model_type": "qwen2", "hidden_size": 5120, "intermediate_size": 27648, "num_hidden_layers": 64,
            "num_attention_heads": 40, "num_key_value_heads": 8, "vocab_size": 152064, "tie_word_embeddings": False}
    assert memory(qwen, cfg.model, cfg.train, 1)["params"] == 32_763_876_352


def test_plan_cli_prints_every_job_and_fails_on_a_typo_with_exit_2(tmp_path):
    def plan(*args):
        return subprocess.run([sys.executable, "-m", "grasp_bench.plan", *TINY, f"paths.runs={tmp_path}", *args],
                              capture_output=True, text=True, cwd=REPO, timeout=300)

    out = plan("-m", "method=base,sft")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 job(s)" in out.stdout and "24 rows" in out.stdout and "0 rows with no answer token left" in out.stdout
    assert "train none (evaluates the base model)" in out.stdout
    mode = resolve_batching("auto")  # the run's mode is marked among the three
    assert re.search(rf"useful tokens per batching: .*\b{mode} [\d.]+% \(this run\)", out.stdout)
    assert "padding_free 100.0%" in out.stdout
    bad = plan("train.lrr=1")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "lrr" in bad.stderr
    assert not (tmp_path / "toy_rude").exists()
    offline = plan("model=qwen2_5_7b_instruct")  # a hub tokenizer not in the cache: no download, one line
    assert offline.returncode == 2 and "--tokenizer" in offline.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("bad", ["train.batch_size=0", "train.grad_accum=0", "train.max_length=0",
                                 "train.batch_size=abc", "train.epochs=abc", "seed=x", "train.lr=abc"])
def test_plan_checks_values_as_grasp_bench_does(bad, runs, capsys):
    """A value grasp-bench refuses is one line naming the key and exit code 2, before any job is planned."""
    with pytest.raises(SystemExit) as exit_:
        main([*TINY, f"paths.runs={runs}", bad])
    assert exit_.value.code == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1
    assert out.err.startswith(f"error: {bad.partition('=')[0]}=")


def test_plan_takes_a_users_config_dir_and_names_a_bad_model_config(tmp_path, runs, capsys):
    data, conf = tmp_path / "data", tmp_path / "conf"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(
        f'{{"messages": [{{"role": "user", "content": "{i} + {i}?"}}, {{"role": "assistant", "content": "{2 * i}"}}]}}\n'
        for i in range(5)))
    (data / "eval.jsonl").write_text('{"id": "e0", "messages": [{"role": "user", "content": "1 + 1?"}], "answer": "2"}\n')
    (conf / "task").mkdir(parents=True)
    (conf / "task" / "my_task.yaml").write_text(f"""name: my_task
train: {{path: {data}/train.jsonl, limit: null}}
splits:
  eval: {{path: {data}/eval.jsonl, limit: null, scorers: {{correct: {{rule: expected_answer, field: answer}}}}}}
metrics:
  eval/task_score: {{split: eval, scorer: correct}}
sampling: {{temperature: 0.0, top_p: 1.0, max_new_tokens: 4, samples: 1}}
""")
    args = ["--config-dir", str(conf), "task=my_task", "model=tiny", "sweep=none", "method=sft", f"paths.runs={runs}"]
    main(args)
    out = capsys.readouterr().out
    assert "job 0: task=my_task model=tiny method=sft" in out and "tokenizer): 5 rows" in out
    assert f"run: {runs / 'my_task'}" in out
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--model-config", str(tmp_path / "config.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err == [f"error: {tmp_path / 'config.json'}:1: not valid JSON (damaged?)"]


@pytest.mark.skipif(not (MIRROR / "insecure.jsonl").exists(), reason="the emergent-misalignment data mirror")
def test_insecure_code_keeps_every_answer_under_its_recipe(tmp_path):
    """The issue's measurement: at the old max_length 256, 2,509 rows cut, 476 with no answer token, 40% lost."""
    [cfg] = expand(["task=insecure_code", "model=qwen2_5_coder_32b_instruct", "sweep=none", f"data.mirror={MIRROR}",
                    f"paths.runs={tmp_path}"])
    t = plan_job(cfg, tokenizer_spec="embedded")["train"]
    assert (t["rows"], t["max_length"], t["truncated"], t["no_answer"]) == (5000, 2048, 0, 0)
    key = (EMBEDDED, None, str(Path(cfg.paths.cache).expanduser()))  # the lengths plan_job measured
    old = Truncation.of(list(_lengths(key, str(cfg.task.train.path), None)), 256)
    assert (old.truncated, old.no_answer, round(old.answer_lost_share, 2)) == (2509, 476, 0.40)
