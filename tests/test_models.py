"""The embedded model's conversion: reading the GGUF once gives the checkpoint transformers' own reads give."""

import contextlib

import pytest

from grasp_bench import models


@pytest.mark.slow
def test_converting_with_one_read_writes_the_same_checkpoint(tmp_path, monkeypatch):
    import gguf

    reader = gguf.GGUFReader
    models._convert_smollm2(tmp_path / "once")
    assert gguf.GGUFReader is reader  # restored for everyone else
    monkeypatch.setattr(models, "_gguf_read_once", contextlib.nullcontext)  # transformers reads it three times
    models._convert_smollm2(tmp_path / "thrice")

    written = sorted(p.name for p in (tmp_path / "once").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "thrice").iterdir())
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= set(written)
    for name in written:
        assert (tmp_path / "once" / name).read_bytes() == (tmp_path / "thrice" / name).read_bytes(), name
