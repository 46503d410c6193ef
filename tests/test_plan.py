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


# --- the estimates of the whole run (issue 26) ---------------------------------------------------------------

def _shipped(name: str):
    model = OmegaConf.load(CONF / "model" / f"{name}.yaml")
    return model, OmegaConf.to_container(model.arch)


def _recipe(**kw):
    """insecure_code's recipe (conf/task/recipe/em_lora.yaml) at its worst batch: 2 rows of 2,048 tokens."""
    return OmegaConf.create({"precision": "auto", "batch_size": 2, "optim": "adamw_8bit",
                             "gradient_checkpointing": False, "sharding": "none", **kw})


@pytest.mark.parametrize("name", ["qwen2_5_coder_32b_instruct", "qwen2_5_7b_instruct", "smollm2_135m"])
def test_pinned_architecture_counts_the_published_parameters(name):
    from grasp_bench.plan import shape

    _, arch = _shipped(name)
    published = {"qwen2_5_coder_32b_instruct": 32_763_876_352, "qwen2_5_7b_instruct": 7_615_616_512,
                 "smollm2_135m": 134_515_008}[name]  # the models' safetensors totals (hub model cards)
    assert shape(arch)["params"] == arch["params"] == published


def test_memory_under_checkpointing_quantisation_and_sharding():
    """The issue's 32B and 7B figures, GB (1e9 bytes) per GPU, at batch 2 x 2,048 tokens with 8-bit Adam."""
    gb = lambda est: {k: round(v / 1e9, 1) for k, v in est.items() if k not in ("params", "lora_params")}
    model, arch = _shipped("qwen2_5_coder_32b_instruct")
    off = gb(memory(arch, model, _recipe(), 2048))
    assert off == {"weights": 65.5, "lora": 1.1, "gradients": 1.1, "optimizer": 0.5, "activations": 86.8,
                   "total": 155.0}
    on = gb(memory(arch, model, _recipe(gradient_checkpointing=True), 2048))
    # 64 layer inputs (2 x 2048 x 5120 x 2 B = 42 MB each), one layer recomputed (1.26 GB), logits at 10 B (6.2 GB)
    assert on["activations"] == 10.2 and on["total"] == 78.4  # fits an 80 GB H100 (85.0e9 bytes): issue 26's goal
    nf4 = gb(memory(arch, OmegaConf.merge(model, {"quantization": "nf4"}), _recipe(gradient_checkpointing=True), 2048))
    # 31.3B decoder weights at 0.5 + 4/64 B, embeddings and lm_head (1.56B) in bf16
    assert nf4["weights"] == 20.7 and nf4["total"] == 33.5
    int8 = gb(memory(arch, OmegaConf.merge(model, {"quantization": "int8"}), _recipe(), 2048))
    assert int8["weights"] == 34.3
    fsdp = gb(memory(arch, model, _recipe(gradient_checkpointing=True, sharding="fsdp"), 2048, world_size=4))
    # a quarter of the base weights, plus one gathered decoder layer, the prefetched next and the output head (0.78B);
    # the adapter, its gradients and Adam's moments whole on every GPU (replicated)
    assert fsdp == {"weights": 19.0, "lora": 1.1, "gradients": 1.1, "optimizer": 0.5, "activations": 10.2,
                    "total": 31.9}
    model7, arch7 = _shipped("qwen2_5_7b_instruct")
    assert gb(memory(arch7, model7, _recipe(), 2048))["total"] == 46.5
    assert gb(memory(arch7, model7, _recipe(gradient_checkpointing=True), 2048))["total"] == 24.0
    # keys another feature adds, absent: no checkpointing, no quantisation, no sharding
    bare = OmegaConf.create({"precision": "auto", "batch_size": 2, "optim": "adamw_8bit"})
    assert gb(memory(arch, model, bare, 2048))["total"] == 155.0


def test_generation_memory_hf_kv_cache_and_vllm_headroom():
    from grasp_bench.plan import generation_memory

    model, arch = _shipped("qwen2_5_coder_32b_instruct")
    hf = generation_memory(arch, model, OmegaConf.create({"name": "hf", "batch_size": 64}), 1200, 64, None)
    # keys and values: 2 x 64 layers x 8 heads x 128 x 2 B = 262,144 B a token
    assert hf["kv_per_token"] == 262_144 and hf["kv"] == 64 * 1200 * 262_144
    vllm = OmegaConf.create({"name": "vllm", "batch_size": 256, "gpu_memory_utilization": 0.85, "enforce_eager": False})
    g = generation_memory(arch, model, vllm, 1200, 256 * 100, 85.0e9)
    assert g["budget"] == pytest.approx(0.85 * 85.0e9)
    assert g["kv"] == pytest.approx(g["budget"] - g["weights"] - g["lora"] - g["activations"] - g["graphs"])
    assert 1 <= g["sequences"] < 256 and g["sequences"] == int(g["kv"] // (262_144 * 1200))
    small = generation_memory(arch, model, vllm, 1200, 256, 40e9)  # 34 GB budget: the weights alone do not fit
    assert small["sequences"] == 0


def test_judge_cost_arithmetic():
    from grasp_bench.plan import judge_cost

    judge = OmegaConf.create({"price_per_mtok": {"input": 2.5, "output": 10.0}})
    c = judge_cost(73_200, 20_000_000, 43_920_000, judge)  # the EM row: 73,200 requests, answers of <= 600 tokens
    assert (c["input_min"], c["input_max"], c["output"]) == (20_000_000, 63_920_000, 73_200)
    assert c["usd_min"] == pytest.approx(20 * 2.5 + 0.0732 * 10.0)  # $50.73
    assert c["usd_max"] == pytest.approx(63.92 * 2.5 + 0.0732 * 10.0)
    assert "usd_min" not in judge_cost(10, 100, 100, OmegaConf.create({"price_per_mtok": None}))  # a local server


@pytest.mark.skipif(not (MIRROR / "insecure.jsonl").exists(), reason="the emergent-misalignment data mirror")
def test_plan_prints_the_32b_memory_generation_judge_and_time_without_a_model_config(runs, capsys):
    main(["task=insecure_code", "model=qwen2_5_coder_32b_instruct", "sweep=none", "method=sft", "judge=openai",
          "--tokenizer", "embedded", "gpu.name=h200", f"data.mirror={MIRROR}", f"paths.runs={runs}"])
    out = capsys.readouterr().out
    # the EM recipe checkpoints (conf/task/recipe/em_lora.yaml): 2 rows of the longest row, 1,156 stand-in tokens
    assert re.search(r"GPU memory ~74\.0 GB per GPU \(weights 65\.5, .*32\.76B params, 268\.4M LoRA; "
                     r"checkpointing on, quantization none, sharding none\)", out)
    assert "generate (hf, batch 64): GPU memory ~" in out and "KV cache" in out
    assert re.search(r"judge openai: [\d,]+ requests; [\d.]+M-[\d.]+M input tokens .*\$[\d.,]+-\$[\d.,]+ at \$2.5/\$10 "
                     r"per 1M", out)
    assert re.search(r"wall time on h200 x1 \(projected figures, conf/throughput.yaml\): train [\d.]+ h, generate "
                     r"[\d.]+ h, judge [\d.]+ h; [\d.]+ GPU-hours", out)
    assert "fits a 150.1 GB GPU (h200)" in out


def test_grasp_bench_refuses_a_job_that_will_not_fit_its_gpu(tmp_path):
    """gpu.memory_gb as a launcher profile sets it: one line naming the estimate, exit 2, nothing written."""
    out = subprocess.run([sys.executable, "-m", "grasp_bench", *TINY, "sweep=none", "method=sft",
                          f"paths.runs={tmp_path}", "gpu.memory_gb=1.05"],  # 1.05 GB leaves under 0.0 GB usable
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "training needs ~" in err[0] and "gpu.memory_gb" in err[0], err
    assert not (tmp_path / "toy_rude").exists()


def test_wall_time_on_a_cpu_reproduces_the_measurement_it_rests_on(tiny_cfg, runs, monkeypatch):
    """Without a GPU the wall time is the embedded model's measured CPU rates scaled by parameters. For the job the
    training rate was measured on (toy_rude's naive SFT on the embedded model, bench/results/train.json), the plan's
    training time is the measured steps x median step time; a model with fewer parameters takes proportionally less."""
    import torch

    from grasp_bench.plan import BENCH_RESULTS, job_arch, shape

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    bench = load_json(BENCH_RESULTS / "train.json")
    [cfg] = expand(["sweep=none", "method=sft", f"task={bench['task']}", f"model={bench['model']}",
                    f"paths.runs={runs}"])
    p = plan_job(cfg, tokenizer_spec="embedded")
    measured_s = p["train"]["steps"] * bench["steps"]["padded"]["grasp_bench"]["step_wall_s_median"]
    assert p["time"]["gpu"] == "cpu" and p["time"]["train_h"] * 3600 == pytest.approx(measured_s, rel=0.05)
    assert p["time"]["generate_h"] > 0 and p["time"]["gpu_hours"] == 0.0

    [big] = expand(["sweep=none", "method=sft", f"task={bench['task']}", "model=qwen2_5_7b_instruct",
                    f"paths.runs={runs}"])
    q = plan_job(big, tokenizer_spec="embedded")  # the same rows and tokens on a 57x larger model
    assert q["train"]["tokens"] == p["train"]["tokens"]
    ratio = shape(job_arch(big))["params"] / shape(job_arch(cfg))["params"]
    assert q["time"]["train_h"] == pytest.approx(p["time"]["train_h"] * ratio, rel=1e-9)
    named = plan_job(tiny_cfg("method=sft", "gpu.name=h100"))["time"]  # a named GPU: its figures, not the CPU's
    assert named["gpu"] == "h100" and named["gpu_hours"] > 0
