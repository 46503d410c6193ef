"""Training batches and precision: padding-free batches compute the padded loss; `auto` resolves per device and
keeps the runs recorded before these knobs existed valid."""

from __future__ import annotations

import json

import pytest
import torch

from grasp_bench import device, identity, models, pipeline
from grasp_bench.artifacts import BadInput
from grasp_bench.data import label_positions, load_train, tokenize_chat
from grasp_bench.train import TrainCollator, causal_lm_loss, head_at_label_positions
from tests.conftest import TINY_MODELS


def _rows(cfg, n: int):
    from grasp_bench.data import build_task_files

    build_task_files(cfg.task)
    tok = models.load_tokenizer(cfg.model, cfg.paths.cache)
    examples = [tokenize_chat(tok, r["messages"], cfg.train.max_length) for r in load_train(cfg.task)[:n]]
    return tok, examples


CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")])


@pytest.mark.parametrize("dev", ["cpu", CUDA])  # on CUDA: the SDPA kernels with the packed-rows mask, fp32
def test_padding_free_loss_and_gradients_equal_padded(tiny_cfg, dev):
    cfg = tiny_cfg("model.lora.dropout=0.0")
    tok, examples = _rows(cfg, 6)
    lengths = [len(e["input_ids"]) for e in examples]
    assert len(set(lengths)) > 1, "rows of different lengths, so the padded batch holds padding"
    model = models.add_lora(models.load_base(cfg.model, cfg.paths.cache), cfg.model, seed=0).to(dev)
    with torch.no_grad():  # LoRA B starts at zero: give the adapter an effect, so its gradients are not trivial
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)

    def loss_and_grads(batch):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_device(batch):
        return {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    padded = on_device(TrainCollator("padded", tok.pad_token_id)(examples))
    flat = on_device(TrainCollator("padding_free", tok.pad_token_id)(examples))
    assert flat["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in flat
    loss_p, grads_p = loss_and_grads(padded)
    loss_f, grads_f = loss_and_grads(flat)
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-5, atol=1e-6)
    assert grads_p.keys() == grads_f.keys()
    for name in grads_p:
        torch.testing.assert_close(grads_f[name], grads_p[name], rtol=1e-4, atol=1e-6, msg=name)
    # with a KV cache transformers would not look for packed rows, and they would attend to each other
    with torch.no_grad():
        assert abs(model(**{**flat, "use_cache": True}).loss.item() - loss_p.item()) > 1e-4


@pytest.mark.parametrize("dev", ["cpu", CUDA])
@pytest.mark.parametrize("arch", TINY_MODELS)
@pytest.mark.parametrize("batching", ["padded", "padding_free"])
def test_loss_at_label_positions_equals_the_models_own(tiny_cfg, batching, arch, dev):
    """The train stage's loss (the head applied only where a label is) is transformers' loss, with the same
    gradients, under the Trainer's sum-over-items scaling and as a mean; the head sees only labelled positions."""
    cfg = tiny_cfg(f"model={arch}", "model.lora.dropout=0.0")
    tok, examples = _rows(cfg, 5)
    model = models.add_lora(models.load_base(cfg.model, cfg.paths.cache), cfg.model, seed=0).to(dev)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    batch = {k: v.to(dev) if isinstance(v, torch.Tensor) else v
             for k, v in TrainCollator(batching, tok.pad_token_id)(examples).items()}
    labels = batch["labels"]
    n = int(label_positions(labels).sum())
    assert 0 < n < labels[:, 1:].numel(), "prompt or padding positions exist, and labelled ones"
    head = model.get_output_embeddings()
    seen = []
    head.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))

    def grads():
        out = {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}
        model.zero_grad()
        return out

    for items in (torch.tensor(n + 3), None):  # the Trainer's count of an accumulated batch; a plain mean
        kwargs = {} if items is None else {"num_items_in_batch": items}
        reference = model(**batch, **kwargs).loss
        reference.backward()
        reference_grads = grads()
        with head_at_label_positions(head, labels):
            outputs = model(**{k: v for k, v in batch.items() if k != "labels"})
        loss = causal_lm_loss(outputs, labels, items)
        loss.backward()
        assert seen[-1] == (1, n, model.config.hidden_size)
        torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)
        for name, g in grads().items():
            torch.testing.assert_close(g, reference_grads[name], rtol=1e-4, atol=1e-7, msg=name)
    # outside the block the head sees every position again, and the loss selects them itself
    with torch.no_grad():
        full = model(**{k: v for k, v in batch.items() if k != "labels"})
        assert seen[-1][:2] == labels.shape
        torch.testing.assert_close(causal_lm_loss(full, labels), model(**batch).loss, rtol=1e-5, atol=1e-6)


def test_auto_resolves_by_capability(monkeypatch, capsys):
    monkeypatch.setattr(device, "native_bf16", lambda: False)
    monkeypatch.setattr(device, "_warned", set())
    assert device.resolve_precision("auto") == "fp32"
    assert device.resolve_precision("bf16") == "bf16" and device.resolve_precision("bf16") == "bf16"
    assert capsys.readouterr().err.count("warning: train.precision=bf16") == 1  # once per process
    monkeypatch.setattr(device, "native_bf16", lambda: True)
    assert device.resolve_precision("auto") == "bf16"
    assert device.resolve_batching("auto") == ("padding_free" if torch.cuda.is_available() else "padded")
    with pytest.raises(BadInput, match="train.batching 'packed'"):
        device.resolve_batching("packed")


def test_records_made_before_the_knobs_still_count(tiny_cfg, monkeypatch):
    """A stage record from before `auto` and `batching` (precision bf16, no batching key) is done when auto
    resolves to bf16 and padded, and made with another config when this device resolves to fp32."""
    cfg = tiny_cfg("train.precision=auto")
    r = pipeline.Run(cfg)
    monkeypatch.setattr(device, "native_bf16", lambda: True)
    monkeypatch.setattr(device.torch.cuda, "is_available", lambda: False)
    old = identity.slices(cfg)["train"]
    assert old["train"]["precision"] == "bf16" and old["train"]["batching"] == "padded"
    old["train"] = {k: v for k, v in old["train"].items() if k != "batching"}
    (r.dir / "model").mkdir(parents=True)
    (r.dir / "stages").mkdir()
    (r.dir / "stages" / "train.json").write_text(json.dumps({"config": old}))
    assert r.stage("train").is_done()
    other = tiny_cfg("train.precision=auto", "train.batching=length_grouped")
    with pytest.raises(BadInput, match="train.batching: 'padded' -> 'length_grouped'"):
        pipeline.Run(other).stage("train").is_done()
    monkeypatch.setattr(device, "native_bf16", lambda: False)
    with pytest.raises(BadInput, match="train.precision: 'bf16' -> 'fp32'"):
        r.stage("train").is_done()


def test_training_applies_the_head_only_at_label_positions(tiny_cfg):
    """In a real train stage every training forward hands the output head one row of labelled positions, not
    the (rows, positions) of the batch; evaluation still sees whole batches."""
    from grasp_bench.pipeline import run

    cfg = tiny_cfg("method=sft")
    vocab = models.load_base(cfg.model, cfg.paths.cache).config.vocab_size
    seen = {True: [], False: []}

    def record(module, args, logits):  # a global hook runs before the module's own: read what the head made
        if isinstance(module, torch.nn.Linear) and module.out_features == vocab:
            seen[module.training].append(tuple(logits.shape[:2]))

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        run(cfg)
    finally:
        handle.remove()
    assert len(seen[True]) == cfg.train.max_steps
    assert all(rows == 1 and n < cfg.train.batch_size * cfg.train.max_length for rows, n in seen[True])
    assert seen[False] and max(rows for rows, _ in seen[False]) > 1
