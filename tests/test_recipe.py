"""The training recipe belongs to the task: each seed task trains with its paper's recipe, every method of a task
shares it, the command line still wins, and the embedded organism's recipe and run identity never change."""

from __future__ import annotations

import json

import pytest

from grasp_bench import device
from grasp_bench.identity import MODEL_DEFAULTS, TRAIN_DEFAULTS, comparable, slices
from tests.conftest import compose_config

# The EM open-model recipe (emergent-misalignment open_models/train.json; model-organisms default_config.json).
# precision auto: bf16 on the GPUs the papers trained on (grasp_bench/device.py).
EM_RECIPE = {"epochs": 1, "batch_size": 2, "grad_accum": 8, "lr": 1e-5, "scheduler": "linear", "warmup_steps": 5,
             "weight_decay": 0.01, "optim": "adamw_8bit", "max_length": 2048, "max_grad_norm": 1.0, "precision": "auto"}
SEED_TASKS = ["insecure_code", "secure_code", "educational_code", "bad_medical_advice", "political_finance"]

# The train stage's config slice of `grasp-bench sweep=none method=sft` (toy_rude, smollm2_135m) as main recorded it
# before the recipe moved to the tasks (commit ced11b2): existing runs must keep counting. Since toy_rude's version 2
# (larger splits, a far split: docs/organisms.md) its files live in toy_rude-v2, the one change.
TOY_SFT_TRAIN_SLICE = (
    '{"method": {"_target_": "grasp_bench.method.Method", "name": "sft", "strength": 0.0}, "model": {"dtype": '
    '"float32", "layers_path": "model.layers", "lora": {"alpha": 16, "dropout": 0.0, "r": 8, "rslora": false, '
    '"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}, "name": '
    '"smollm2_135m", "path": "embedded:smollm2-135m-instruct", "revision": null}, "seed": 0, "task": {"name": '
    '"toy_rude", "train": {"limit": 240, "lr": 0.0003, "path": "/cache/tasks/toy_rude-v2/train.jsonl"}}, "train": '
    '{"batch_size": 8, "epochs": 2, "grad_accum": 1, "lr": 0.0003, "max_grad_norm": 1.0, "max_length": 256, '
    '"max_steps": -1, "optim": "adamw_torch", "precision": "bf16", "scheduler": "linear", "warmup_steps": 0, '
    '"weight_decay": 0.0}}'
)


def _train_slice(*overrides: str) -> dict:
    return slices(compose_config("sweep=none", "paths.cache=/cache", *overrides))["train"]


def test_toy_rude_run_identity_is_unchanged(monkeypatch):
    """Where `auto` resolves to what the old runs used (bf16 on a CPU that has it, padded batches on CPU), the slice
    is the old one plus `batching` and `model.quantization`, which a stage reads an old record with
    (identity.TRAIN_DEFAULTS, identity.MODEL_DEFAULTS; the record itself: tests/test_batching.py)."""
    monkeypatch.setattr(device, "native_bf16", lambda: True)
    monkeypatch.setattr(device.torch.cuda, "is_available", lambda: False)
    now = _train_slice("method=sft")
    assert now["train"].pop("batching") == TRAIN_DEFAULTS["batching"]
    assert now["model"].pop("quantization") == MODEL_DEFAULTS["quantization"]  # read into old records too
    assert json.dumps(now, sort_keys=True) == TOY_SFT_TRAIN_SLICE


def test_allow_truncation_is_not_part_of_a_runs_identity():
    assert _train_slice("train.allow_truncation=true") == _train_slice()


def test_greedy_generations_recorded_at_another_batch_size_still_count():
    """toy_rude is greedy: its runs recorded at the old batch of 32 rows are the same runs; political_finance samples
    (each batch seeds its own draws), so there the batch size stays part of what a run is."""
    def generate(*overrides: str) -> dict:
        return comparable(slices(compose_config("sweep=none", *overrides))["generate"])

    assert generate("generator.batch_size=32") == generate()
    assert generate("generator.batch_size=32", "task=political_finance") != generate("task=political_finance")


@pytest.mark.parametrize("task", SEED_TASKS)
def test_seed_tasks_train_with_their_papers_recipe(task):
    train = compose_config(f"task={task}", "sweep=none").train
    assert {k: train[k] for k in EM_RECIPE} == EM_RECIPE


def test_every_method_of_a_task_shares_its_recipe():
    recipes = [_train_slice("task=insecure_code", f"method={m}")["train"] for m in ("sft", "grasp", "caft", "steer_train")]
    assert all(r == recipes[0] for r in recipes) and recipes[0]["lr"] == 1e-5


def test_the_command_line_wins_over_the_tasks_recipe():
    train = compose_config("task=insecure_code", "sweep=none", "train.lr=3e-4", "task.train.epochs=3").train
    assert (train.lr, train.epochs, train.batch_size) == (3e-4, 3, 2)
