"""SLURM profiles (conf/hydra/launcher/) as Hydra composes them, and a run split between GPU and API nodes."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from grasp_bench.identity import run_dir
from grasp_bench.pipeline import run
from grasp_bench.plan import gpu_spec
from tests.conftest import CONF, TINY, compose_config

PROFILES = {  # profile: (host RAM GB, GPUs per node, the GPU the plan's fit check assumes, its memory GB)
    "slurm": (64, 1, None, None),
    "slurm_7b": (64, 1, "h100", 85.0),  # the smallest of a100|h100|h200
    "slurm_32b": (160, 1, "h100", 85.0),
    "slurm_judge": (8, None, None, None),
}


def _composed(profile: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"hydra/launcher={profile}", "sweep=none", *overrides],
                       return_hydra_config=True)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_slurm_profile_composes_with_requeue_and_its_gpu(profile):
    cfg = _composed(profile)
    launcher = cfg.hydra.launcher
    mem, gpus, gpu, gpu_gb = PROFILES[profile]
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.mem_gb, launcher.gpus_per_node) == (mem, gpus)
    assert launcher.max_num_timeout >= 1 and launcher.signal_delay_s >= 60  # time-outs requeue, with warning
    assert launcher.timeout_min >= 60
    spec = gpu_spec(cfg)  # the plan and grasp-bench's fit check read the profile's GPU constraint
    assert (spec["name"], spec["memory_gb"]) == (gpu, gpu_gb)
    assert gpu_spec(_composed(profile, "gpu.name=h200"))["memory_gb"] == 150.1  # gpu.* wins


def test_a_preempted_or_timed_out_job_is_resubmitted_whole():
    """submitit calls the launcher's checkpoint() on SIGUSR2: the same job is submitted again, and grasp-bench
    resumes it (done stages skipped, training from its last Trainer checkpoint: tests/test_resume.py)."""
    import submitit

    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    launcher = SlurmLauncher(**{k: v for k, v in OmegaConf.to_container(_composed("slurm_32b").hydra.launcher).items()
                                if k != "_target_"})
    again = launcher.checkpoint("job-args")
    assert isinstance(again, submitit.helpers.DelayedSubmission) and again.function is launcher
    assert again.args == ("job-args",)


def test_train_and_generate_on_one_node_then_judge_and_metrics_on_another(runs):
    """stages=[train,generate] (a GPU job), then stages=[judge,metrics] (an API job): nothing is redone."""
    gpu_job = compose_config(*TINY, "method=sft", "stages=[train,generate]", runs=runs)
    run(gpu_job)
    d = run_dir(gpu_job)
    made = {p: p.stat().st_mtime_ns for p in (d / "generations.jsonl", d / "stages" / "train.json")}
    assert not (d / "judgments").exists() and not (d / "metrics").exists()
    metrics = run(compose_config(*TINY, "method=sft", "stages=[judge,metrics]", runs=runs))
    assert {p: p.stat().st_mtime_ns for p in made} == made  # neither trained nor generated again
    assert (d / "metrics" / "rule.json").exists() and metrics["eval/spurious_rate_n"] > 0


def test_the_submitting_node_refuses_a_job_too_big_for_the_profiles_gpu(tmp_path):
    """No GPU here: the profile's constraint (slurm_32b: an 80 GB H100) is the GPU checked, before SLURM sees the
    job. The model: the tiny one (its tokenizer, offline) with the 32B's figures, as a user's model config."""
    import subprocess
    import sys

    from tests.conftest import REPO

    (tmp_path / "conf" / "model").mkdir(parents=True)
    model = OmegaConf.load(CONF / "model" / "tiny.yaml")
    model.name, model.arch = "tiny_as_32b", OmegaConf.load(CONF / "model" / "qwen2_5_coder_32b_instruct.yaml").arch
    OmegaConf.save(model, tmp_path / "conf" / "model" / "tiny_as_32b.yaml")
    (tmp_path / "conf" / "model" / "tiny_as_32b.yaml").write_text(
        "# the tiny model with the 32B's architecture figures\n" + (tmp_path / "conf/model/tiny_as_32b.yaml").read_text())
    args = [o for o in TINY if not o.startswith("model=")]
    out = subprocess.run([sys.executable, "-m", "grasp_bench", "-m", "--config-dir", str(tmp_path / "conf"),
                          "hydra/launcher=slurm_32b", *args, "model=tiny_as_32b", "train.batch_size=2",
                          "method=sft", f"paths.runs={tmp_path / 'runs'}"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    [line] = out.stderr.strip().splitlines()
    assert "training needs ~" in line and "85.0 GB GPU" in line
    assert not (tmp_path / "runs").exists()
