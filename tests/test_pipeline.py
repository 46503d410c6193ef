"""The whole pipeline end to end on the tiny models: files, metrics contract, rerun skips every stage."""

from __future__ import annotations

import json

import pytest

from grasp_bench.artifacts import BadInput, load_json
from grasp_bench.identity import stage_seconds
from grasp_bench.pipeline import run, run_dir
from tests.conftest import TINY_MODELS


@pytest.mark.parametrize("model", TINY_MODELS)
def test_end_to_end_then_rerun_skips(tiny_cfg, model):
    cfg = tiny_cfg(f"model={model}", "method=sft")
    metrics = run(cfg)
    d = run_dir(cfg)
    for f in ["config.yaml", "env.json", "model/adapter_config.json", "generations.jsonl", "judgments/rule.jsonl",
              "metrics/rule.json", "train_log.jsonl"]:
        assert (d / f).exists(), f
    assert d.parts[-5:] == ("toy_rude", model, "sft", "strength=0", "seed=0")
    for key in ["eval/task_score", "eval/spurious_rate", "eval/factor_use_rate"]:
        assert 0.0 <= metrics[key] <= 1.0
        assert metrics[f"{key}_n"] == 6 and metrics[f"{key}_n_unscored"] == 0
    assert len((d / "train_log.jsonl").read_text().splitlines()) == 3
    seconds = stage_seconds(d)  # each stage's wall time, as its record keeps it (the report's cost)
    assert seconds.keys() == {"seconds/train", "seconds/generate", "seconds/judge"}
    assert seconds["seconds/train"] >= 0.1 and all(v >= 0 for v in seconds.values())

    stamps = {p: p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file() and p.name != "config.yaml"
              and p.name != "env.json"}
    assert run(cfg) == metrics
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing recomputed
    gens = [json.loads(line) for line in (d / "generations.jsonl").read_text().splitlines()]
    assert {g["split"] for g in gens} == {"in_domain", "unrelated", "far", "factor_use"}
    assert load_json(d / "stages" / "train.json")["steps"] == 3


def test_same_config_and_seed_give_the_same_metrics_and_weights(tiny_cfg, tmp_path):
    from safetensors.torch import load_file

    a, b = tiny_cfg("method=sft"), tiny_cfg("method=sft", f"paths.runs={tmp_path / 'other'}")
    ma, mb = run(a), run(b)
    assert ma == mb
    for f in ("metrics/rule.json", "generations.jsonl", "judgments/rule.jsonl", "train_log.jsonl"):  # the files too
        assert (run_dir(a) / f).read_bytes() == (run_dir(b) / f).read_bytes(), f
    wa, wb = (load_file(run_dir(c) / "model" / "adapter_model.safetensors") for c in (a, b))
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    c = tiny_cfg("method=sft", "seed=1", f"paths.runs={tmp_path / 'third'}")
    run(c)
    wc = load_file(run_dir(c) / "model" / "adapter_model.safetensors")
    assert any(not (wa[k] == wc[k]).all() for k in wa)  # the seed matters


class NeedsReference:
    """A stand-in method (imported by Hydra) that only records the reference run it was given."""

    def __new__(cls, **kwargs):
        from grasp_bench.method import Method

        class _M(Method):
            needs_reference = True

            def prepare(self, ctx):
                (ctx.run_dir / "reference.txt").write_text(str(ctx.reference_dir))

        return _M(**kwargs)


def test_reference_run_is_built_on_demand(tiny_cfg):
    cfg = tiny_cfg("method=sft", "method._target_=tests.test_pipeline.NeedsReference", "method.name=needs_ref")
    run(cfg)
    ref = run_dir(tiny_cfg("method=sft"))
    assert (run_dir(cfg) / "reference.txt").read_text() == str(ref)
    assert (ref / "model" / "adapter_config.json").exists() and (ref / "stages" / "train.json").exists()
    assert not (ref / "generations.jsonl").exists()  # only what was needed: the trained weights


def test_untrained_base_has_no_train_stage(tiny_cfg):
    cfg = tiny_cfg("method=base")
    metrics = run(cfg)
    assert not (run_dir(cfg) / "model").exists() and "train/final_loss" not in metrics


def test_a_forced_stage_makes_the_stages_after_it_again(tiny_cfg):
    cfg = tiny_cfg("method=sft")
    run(cfg)
    d = run_dir(cfg)
    files = ["model/adapter_model.safetensors", "generations.jsonl", "judgments/rule.jsonl", "metrics/rule.json"]

    def stamps():
        return {f: (d / f).stat().st_mtime_ns for f in files}

    before = stamps()
    run(tiny_cfg("method=sft", "force=[judge]"))
    after = stamps()
    assert [f for f in files if after[f] != before[f]] == files[2:]  # judge and metrics, not what they read
    run(tiny_cfg("method=sft", "force=[train]"))
    assert all(stamps()[f] != after[f] for f in files)  # a new adapter: generated, judged and measured again


def test_a_greedy_run_is_the_same_run_at_another_generator_batch_size(tiny_cfg, tmp_path):
    """Greedy: how many rows share a forward pass is not what a run is (its generations are kept). Sampled: each
    batch seeds its own draws, so another batch size is another run (refused, naming the key)."""
    cfg = tiny_cfg("method=base")
    run(cfg)
    gens = run_dir(cfg) / "generations.jsonl"
    made = gens.stat().st_mtime_ns
    run(tiny_cfg("method=base", "generator.batch_size=3"))
    assert gens.stat().st_mtime_ns == made

    from tests.conftest import TINY, compose_config

    sampled = [*TINY, "method=base", "task.sampling.temperature=0.7"]
    run(compose_config(*sampled, runs=tmp_path / "sampled"))
    with pytest.raises(BadInput, match="batch_size"):
        run(compose_config(*sampled, "generator.batch_size=3", runs=tmp_path / "sampled"))


def test_two_processes_on_one_run_directory_do_not_interleave(tmp_path):
    """E.g. two sweeps on one runs root: the second waits for the first, then finds every stage done."""
    import subprocess
    import sys

    from tests.conftest import REPO, TINY, compose_config

    args = [sys.executable, "-m", "grasp_bench", *TINY, f"paths.runs={tmp_path}", "method=base",
            "task.splits.in_domain.limit=30", "task.splits.unrelated.limit=30", "task.splits.factor_use.limit=30",
            "task.splits.far.limit=30",
            "generator.batch_size=2"]
    both = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in (0, 1)]
    for p in both:
        p.wait(timeout=600)
        assert p.returncode == 0, p.stderr.read()[-2000:]
    d = run_dir(compose_config(*TINY, "method=base", runs=tmp_path))
    gens = [json.loads(line) for line in (d / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 120 and len({(g["id"], g["sample"]) for g in gens}) == 120
    assert len((d / "judgments" / "rule.jsonl").read_text().splitlines()) == 30 * 2 + 30 + 30 + 30  # in_domain: 2 scorers
