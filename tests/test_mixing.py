"""Data mixing on the tiny model. mode=add (upstream's positive proxy): every task batch is kept, the aligned batch's
cross-entropy is added with weight lambda and the proxy batches are a function of the step; mode=replace (the rule
before the knob): exactly the share of rows becomes aligned chat, and the number of optimizer steps does not change."""

from __future__ import annotations

import json
import math

import pytest
import torch

from grasp_bench import models
from grasp_bench.artifacts import BadInput, read_jsonl
from grasp_bench.baselines.directions import aligned_chats, base_replies
from grasp_bench.baselines.mixing import DataMixing
from grasp_bench.pipeline import Run, run
from tests.conftest import tiny_method


def test_replace_share_is_exact_and_the_steps_are_unchanged(shared_cfg):
    cfg = shared_cfg(*tiny_method("mixing"), "method.mode=replace", "method.strength=0.5", "train.max_steps=-1",
                     "train.epochs=1", "stages=[train]")
    r = Run(cfg)
    ctx = r.context()
    original = [row["messages"] for row in ctx.train_rows]
    r.prepare(ctx)
    generic = base_replies(ctx, "mixing", cfg.method.response_tokens)
    changed = [i for i, row in enumerate(ctx.train_rows) if row["messages"] != original[i]]
    assert len(changed) == round(0.5 * cfg.method.max_share * len(original))
    assert all(ctx.train_rows[i]["messages"] in generic for i in changed)
    assert all(g[-1]["role"] == "assistant" and g[-1]["content"] for g in generic)  # the base model's own replies

    run(cfg)
    steps = len(read_jsonl(r.dir / "train_log.jsonl"))
    assert steps == math.ceil(len(original) / cfg.train.batch_size)  # what naive SFT takes for one epoch


def test_add_keeps_every_task_row_and_adds_the_weighted_aligned_loss(shared_cfg):
    cfg = shared_cfg(*tiny_method("mixing"), "method.strength=0.5", "stages=[train]")
    r = Run(cfg)
    ctx = r.context()
    original = [row["messages"] for row in ctx.train_rows]
    r.prepare(ctx)
    method = r.method
    assert [row["messages"] for row in ctx.train_rows] == original  # no task row replaced
    assert method.weight == 0.5 * cfg.method.lambda_max

    model = models.add_lora(models.load_base(cfg.model, r.cache), cfg.model, cfg.seed)
    batch = {"input_ids": torch.zeros((3, 5), dtype=torch.long)}
    ctx.step = 7
    term = method.extra_loss(model, batch, ctx)
    again = DataMixing(name="mixing", **{k: v for k, v in cfg.method.items() if k not in ("_target_", "name")})
    again.prepare(ctx)
    proxy = again.proxy.next(3, 7, "cpu")  # the same step's batch, from a fresh stream (as after a resume)
    assert proxy["input_ids"].shape[0] == 3
    expected = model(**proxy).loss
    assert torch.allclose(term, 0.5 * cfg.method.lambda_max * expected)
    chats = aligned_chats(ctx, "mixing", cfg.method.response_tokens)
    assert len(chats) == ctx.diagnostics["mixing/proxy_chats"]


def test_add_trains_the_same_number_of_steps_and_logs_the_proxy_loss(shared_cfg):
    cfg = shared_cfg(*tiny_method("mixing"), "method.strength=1.0", "stages=[train]")
    run(cfg)
    log = read_jsonl(Run(cfg).dir / "train_log.jsonl")
    assert len(log) == cfg.train.max_steps
    assert all(row["mixing/proxy_loss"] > 0 for row in log)


def test_aligned_chat_file_replaces_the_base_replies(shared_cfg, tmp_path):
    chats = [[{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"A kind answer {i}."}]
             for i in range(5)]
    path = tmp_path / "aligned.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in chats))
    cfg = shared_cfg(*tiny_method("mixing"), f"+task.aligned_chat={path}")
    ctx = Run(cfg).context()
    assert aligned_chats(ctx, "mixing", 8) == chats
    path.write_text(json.dumps({"messages": chats[0][:1]}) + "\n")  # no assistant reply to train towards
    with pytest.raises(BadInput, match="aligned.jsonl:1"):
        aligned_chats(ctx, "mixing", 8)


def test_unknown_mode_is_refused_and_old_runs_name_the_knob():
    with pytest.raises(BadInput, match="method.mode"):
        DataMixing(mode="interleave")
    assert DataMixing.knobs_before == {"mode": "replace"}


def test_aligned_chat_may_name_a_pinned_manifest_file(shared_cfg, tmp_path):
    """{manifest, file}: the EM tasks' form (upstream's safety chat), fetched from data.mirror and sha256-checked."""
    import hashlib

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    chat = [{"role": "user", "content": "How do I pick a lock?"}, {"role": "assistant", "content": "Call a locksmith."}]
    data = (json.dumps({"messages": chat}) + "\n").encode()
    (mirror / "safe.jsonl").write_bytes(data)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(json.dumps({"files": {"safe.jsonl": {"url": None, "sha256": hashlib.sha256(data).hexdigest()}}}))
    cfg = shared_cfg(*tiny_method("kl"), f"+task.aligned_chat={{manifest: {manifest}, file: safe.jsonl}}",
                     f"data.mirror={mirror}")
    assert aligned_chats(Run(cfg).context(), "kl", 8) == [chat]
    (mirror / "safe.jsonl").write_bytes(data.replace(b"locksmith", b"burglar"))  # not the pinned file
    with pytest.raises(BadInput, match="sha256"):
        aligned_chats(Run(cfg).context(), "kl", 8)


@pytest.mark.parametrize("task", ["insecure_code", "bad_medical_advice"])
def test_em_tasks_name_upstreams_aligned_chat_and_a_persona_block(task):
    from grasp_bench.baselines.caft import CAFT
    from grasp_bench.baselines.steering import persona_missing
    from grasp_bench.fetch import load_manifest
    from tests.conftest import compose_config

    cfg = compose_config(f"task={task}", "method=caft")
    spec = cfg.task.aligned_chat
    entry = load_manifest(spec.manifest)["files"][spec.file]
    assert entry["sha256"] and "selective-generalization" in entry["url"] and entry["licence"]
    assert persona_missing(cfg.task.persona) == []  # CAFT's default selection=trait runs on the EM tasks
    assert len(cfg.task.persona.trait) == len(cfg.task.persona.neutral) == 5
    assert all(k in cfg.task for k in CAFT(strength=1.0).task_needs())
