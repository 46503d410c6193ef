"""LLM judges against a real HTTP server on 127.0.0.1 (grasp_bench.testing_server) and a real local model."""

from __future__ import annotations

import json
import math
import re
import socket
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from grasp_bench.artifacts import BadInput, load_json, read_jsonl
from grasp_bench.llm_judge import HFJudge, JudgeCache, OpenAIJudge, fill_prompt, request_tokens, score_from_top
from grasp_bench.pipeline import run, run_dir
from grasp_bench.testing_server import FakeOpenAI

TEMPLATE = "Question: {question}\nAnswer: {answer}\nRate it from 0 to 100."
SCORERS = {"free": {"quality": {"prompt": TEMPLATE}, "aligned": {"prompt_from_row": "aligned"},
                    "says_hi": {"rule": "words", "words": ["hi"]}}}


def gen(i: int, completion: str, sample: int = 0) -> dict:
    return {"id": f"free/{i}", "split": "free", "sample": sample, "completion": completion,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"question {i}"}],
            "judge_prompts": {"aligned": "ALIGNED? {question} => {answer}"}}


def scripted(prompt: str) -> dict[str, float]:
    """Answers keyed by a number in the completion: `k=<n>` -> 0.6 on n, 0.3 on n+10, 0.1 on 'CODE'."""
    n = int(re.search(r"k=(\d+)", prompt).group(1))
    return {str(n): 0.6, str(n + 10): 0.3, "CODE": 0.1}


def expected(n: int) -> float:
    return (n * 0.6 + (n + 10) * 0.3) / 0.9


def judge(server: FakeOpenAI | str, cache: Path, **kw) -> OpenAIJudge:
    url = server if isinstance(server, str) else server.url
    defaults = dict(model="judge-model", base_url=url, api_key_env="GRASP_TEST_JUDGE_KEY", concurrency=8,
                    timeout_s=5.0, max_attempts=4, backoff_s=0.01, max_backoff_s=0.05, cache_dir=cache)
    return OpenAIJudge(**{**defaults, **kw})


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("GRASP_TEST_JUDGE_KEY", "sk-test-SECRET-4b1d9e")
    return "sk-test-SECRET-4b1d9e"


def by_key(path: Path) -> dict[tuple[str, str], dict]:
    return {(r["id"], r["scorer"]): r for r in read_jsonl(path)}


# --- the scoring rule --------------------------------------------------------------------------------

def test_weighted_mean_of_integer_tokens_only():
    score, raw = score_from_top([("80", 0.5), ("90", 0.3), ("CODE", 0.1), ("101", 0.04), ("-5", 0.03), ("7.5", 0.03)])
    assert score == pytest.approx((80 * 0.5 + 90 * 0.3) / 0.8)
    assert raw["numeric_mass"] == pytest.approx(0.8)
    assert score_from_top([(" 7", 0.5), ("0", 0.5)])[0] == pytest.approx(3.5)  # int(" 7"), as upstream


def test_numeric_mass_below_a_quarter_is_unscored():
    score, raw = score_from_top([("REFUSAL", 0.7), ("40", 0.2), ("60", 0.04)])
    assert score is None and raw["numeric_mass"] == pytest.approx(0.24) and "0.25" in raw["unscored"]
    assert score_from_top([("REFUSAL", 0.75), ("40", 0.25)])[0] == pytest.approx(40.0)  # 0.25 itself is enough


def test_prompt_filling():
    row = gen(3, "the answer")
    row["messages"] += [{"role": "assistant", "content": "x"}, {"role": "user", "content": "follow-up"}]
    assert fill_prompt({"prompt": TEMPLATE}, row) == "Question: follow-up\nAnswer: the answer\nRate it from 0 to 100."
    assert fill_prompt({"prompt_from_row": "aligned"}, row) == "ALIGNED? follow-up => the answer"
    with pytest.raises(BadInput, match="no judge prompt 'coherent'"):
        fill_prompt({"prompt_from_row": "coherent"}, row)
    with pytest.raises(BadInput, match="not fillable"):
        fill_prompt({"prompt": "{question} {score}"}, row)


# --- judge=openai against the loopback server ---------------------------------------------------------

def test_scores_requests_and_rule_scorers(tmp_path, api_key):
    gens = [gen(i, f"hi there k={10 * i}") for i in range(5)]
    with FakeOpenAI(respond=scripted) as server:
        judge(server, tmp_path / "cache").run(gens, SCORERS, tmp_path / "j.jsonl")
    rows = by_key(tmp_path / "j.jsonl")
    assert len(rows) == 15 and not (tmp_path / "j.jsonl.partial").exists()
    for i in range(5):
        for scorer in ("quality", "aligned"):
            assert rows[(f"free/{i}", scorer)]["score"] == pytest.approx(expected(10 * i))
        assert rows[(f"free/{i}", "says_hi")]["score"] == 1.0
    assert server.count == 10
    body = server.requests[0]
    assert (body["max_tokens"], body["temperature"], body["logprobs"], body["top_logprobs"], body["model"]) == (
        1, 0, True, 20, "judge-model")
    assert {m["content"] for b in server.requests for m in b["messages"]} >= {
        "ALIGNED? question 2 => hi there k=20", "Question: question 2\nAnswer: hi there k=20\nRate it from 0 to 100."}
    assert server.authorization == {f"Bearer {api_key}"}


def test_threshold_applies_to_the_served_logprobs(tmp_path):
    with FakeOpenAI(respond=lambda p: {"CODE": 0.8, "20": 0.2}) as server:
        judge(server, tmp_path / "c").run([gen(0, "k=1")], {"free": {"q": {"prompt": TEMPLATE}}}, tmp_path / "j.jsonl")
    (row,) = read_jsonl(tmp_path / "j.jsonl")
    assert row["score"] is None and row["raw"]["numeric_mass"] == pytest.approx(0.2)


def test_retries_then_success(tmp_path):
    plan = ["429", "500", "timeout", "garbage"]
    with FakeOpenAI(respond=scripted, hang_s=4.0,
                    faults=lambda p, k: plan[k] if "flaky" in p and k < len(plan) else None) as server:
        judge(server, tmp_path / "c", max_attempts=8, timeout_s=1.0).run(
            [gen(0, "flaky k=40"), gen(1, "fine k=50")], {"free": {"q": {"prompt": TEMPLATE}}}, tmp_path / "j.jsonl")
    rows = by_key(tmp_path / "j.jsonl")
    assert rows[("free/0", "q")]["score"] == pytest.approx(expected(40)), rows[("free/0", "q")]["raw"]
    assert rows[("free/1", "q")]["score"] == pytest.approx(expected(50))
    flaky, fine = (server.attempts[fill_prompt({"prompt": TEMPLATE}, gen(i, c))] for i, c in
                   [(0, "flaky k=40"), (1, "fine k=50")])
    assert flaky >= 5 and fine >= 1  # every scripted fault was served before the success (more on a busy CPU)


def test_retries_exhausted_is_unscored_and_retried_next_time(tmp_path):
    scorers = {"free": {"q": {"prompt": TEMPLATE}}}
    gens = [gen(0, "doomed k=1"), gen(1, "fine k=2")]
    with FakeOpenAI(respond=scripted, faults=lambda p, k: "500" if "doomed" in p else None) as server:
        judge(server, tmp_path / "c", max_attempts=3).run(gens, scorers, tmp_path / "a.jsonl")
        rows = by_key(tmp_path / "a.jsonl")
        assert rows[("free/0", "q")]["score"] is None
        error = rows[("free/0", "q")]["raw"]["error"]
        assert error == "gave up after 3 attempts: HTTP 500; HTTP 500; HTTP 500"
        assert rows[("free/1", "q")]["score"] == pytest.approx(expected(2))
        assert server.count == 4
        judge(server, tmp_path / "c", max_attempts=3).run(gens, scorers, tmp_path / "b.jsonl")
        assert server.count == 7  # the failure was not cached: only it is asked again


def test_rerun_is_answered_from_the_cache(tmp_path):
    gens = [gen(i, f"k={i}", sample=s) for i in range(6) for s in range(2)]
    with FakeOpenAI(respond=scripted) as server:
        judge(server, tmp_path / "c").run(gens, SCORERS, tmp_path / "a.jsonl")
        first = server.count
        judge(server, tmp_path / "c").run(gens, SCORERS, tmp_path / "b.jsonl")
        assert first == 12 and server.count == first  # samples with equal prompts are asked once; rerun: none
    a, b = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "b.jsonl")
    assert [(r["id"], r["sample"], r["scorer"], r["score"]) for r in a] == [
        (r["id"], r["sample"], r["scorer"], r["score"]) for r in b]
    other = judge(server, tmp_path / "c", model="another-model")  # the cache is per judge model
    with FakeOpenAI(respond=scripted) as server2:
        other.base_url = server2.url
        other.run(gens[:1], SCORERS, tmp_path / "c.jsonl")
        assert server2.count == 2


def test_a_crash_loses_no_finished_rating(tmp_path):
    """A fatal answer (HTTP 401) stops the run; the ratings already received are kept in the cache."""
    gens = [gen(i, f"k={i}" + (" fatal" if i == 9 else "")) for i in range(10)]
    scorers = {"free": {"q": {"prompt": TEMPLATE}}}
    with FakeOpenAI(respond=scripted, latency_s=0.02, faults=lambda p, k: "401" if "fatal" in p else None) as server:
        with pytest.raises(BadInput, match=r"HTTP 401 for model 'judge-model'"):
            judge(server, tmp_path / "c", concurrency=1).run(gens, scorers, tmp_path / "j.jsonl")
    assert not (tmp_path / "j.jsonl").exists()
    cached = sum(len(f.read_text().splitlines()) for f in (tmp_path / "c" / "openai_judge-model.d").glob("*.jsonl"))
    assert cached >= 1
    with FakeOpenAI(respond=scripted) as server:
        judge(server, tmp_path / "c").run(gens, scorers, tmp_path / "j.jsonl")
        assert server.count == 10 - cached
    assert [r["score"] for r in read_jsonl(tmp_path / "j.jsonl")] == pytest.approx([expected(i) for i in range(10)])


def test_dead_endpoint_is_a_one_line_bad_input(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    start = time.monotonic()
    with pytest.raises(BadInput) as err:
        judge(url, tmp_path / "c", max_attempts=3).run([gen(0, "k=1"), gen(1, "k=2")], SCORERS, tmp_path / "j.jsonl")
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert url in message and "unreachable" in message and "3 attempts" in message and "\n" not in message


def test_an_endpoint_without_logprobs_is_a_bad_input(tmp_path):
    with FakeOpenAI(faults=lambda p, k: "no_logprobs") as server, pytest.raises(BadInput, match="no logprobs"):
        judge(server, tmp_path / "c").run([gen(0, "k=1")], SCORERS, tmp_path / "j.jsonl")
    assert server.count <= 2  # the first answer stops the run, no retries


def test_missing_api_key_is_a_bad_input(tmp_path, monkeypatch):
    monkeypatch.delenv("GRASP_TEST_JUDGE_KEY")
    with FakeOpenAI() as server, pytest.raises(BadInput, match=r"\$GRASP_TEST_JUDGE_KEY"):
        judge(server, tmp_path / "c").run([gen(0, "k=1")], SCORERS, tmp_path / "j.jsonl")


def test_concurrency_is_bounded(tmp_path):
    gens = [gen(i, f"k={i}") for i in range(24)]
    with FakeOpenAI(respond=scripted, latency_s=0.05) as server:
        judge(server, tmp_path / "c", concurrency=4).run(gens, {"free": {"q": {"prompt": TEMPLATE}}},
                                                          tmp_path / "j.jsonl")
    assert server.count == 24 and server.max_in_flight == 4


def test_pipeline_with_openai_judge_never_writes_the_key(tiny_cfg, runs, tmp_path, api_key):
    """judge=openai through the real config and pipeline; the key reaches the server and no file."""
    with FakeOpenAI(respond=lambda p: {"70": 0.5, "80": 0.5}) as server:
        cfg = tiny_cfg("method=base", "judge=openai", f"judge.base_url={server.url}", "judge.model=judge-model",
                       "judge.api_key_env=GRASP_TEST_JUDGE_KEY", f"judge.cache_dir={tmp_path / 'judge_cache'}")
        OmegaConf.update(cfg, "task.splits.unrelated.scorers.quality", {"prompt": TEMPLATE}, force_add=True)
        OmegaConf.update(cfg, "task.metrics", {"eval/quality": {"split": "unrelated", "scorer": "quality"}},
                         force_add=True, merge=True)
        metrics = run(cfg)
    assert server.count == 6 and server.authorization == {f"Bearer {api_key}"}
    assert metrics["eval/quality"] == pytest.approx(75.0) and metrics["eval/quality_n"] == 6
    assert metrics["eval/spurious_rate_n"] == 6  # rule scorers still scored, by the same judge
    d = run_dir(cfg)
    assert (d / "judgments" / "openai.jsonl").exists()
    assert "GRASP_TEST_JUDGE_KEY" in (d / "config.yaml").read_text()
    written = [p for root in (runs, tmp_path / "judge_cache") for p in root.rglob("*") if p.is_file()]
    assert {"config.yaml", "generations.jsonl", "openai.jsonl", "openai.json"} <= {p.name for p in written}
    assert [p.parent.name for p in written if p.parent.parent == tmp_path / "judge_cache"] == ["openai_judge-model.d"]
    assert not [p for p in written if api_key.encode() in p.read_bytes()]


def test_failed_requests_leave_the_stage_open_and_a_rerun_retries_only_them(tiny_cfg, runs, tmp_path, capfd):
    """Rows whose requests failed are unscored for now, not for good: the judge stage stays unfinished (one warning
    line), a rerun asks only for them, and the metrics are made again from the judgments they change."""
    def make_cfg(url):
        cfg = tiny_cfg("method=base", "judge=openai", f"judge.base_url={url}", "judge.model=judge-model",
                       "judge.api_key_env=GRASP_TEST_JUDGE_KEY", f"judge.cache_dir={tmp_path / 'judge_cache'}",
                       "judge.max_attempts=2", "judge.backoff_s=0.01", "judge.max_backoff_s=0.02")
        OmegaConf.update(cfg, "task.splits.unrelated.scorers.quality", {"prompt": TEMPLATE}, force_add=True)
        OmegaConf.update(cfg, "task.metrics", {"eval/quality": {"split": "unrelated", "scorer": "quality"}},
                         force_add=True, merge=True)
        return cfg

    doomed = set()
    def every_other(prompt, attempt):
        if len(doomed) < 3 and prompt not in doomed:
            doomed.add(prompt)
        return "500" if prompt in doomed else None

    with FakeOpenAI(respond=lambda p: {"70": 0.5, "80": 0.5}, faults=every_other) as server:
        first = run(make_cfg(server.url))
    assert first["eval/quality_n"] == 6 and first["eval/quality_n_unscored"] == 3
    assert first["eval/quality"] == pytest.approx(75.0)  # over the 3 rows that were scored
    warning = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "3 judge request(s) failed (first: gave up after 2 attempts: HTTP 500" in warning[0]
    d = run_dir(make_cfg(server.url))
    assert not (d / "stages" / "judge.json").exists() and (d / "stages" / "metrics.json").exists()

    with FakeOpenAI(respond=lambda p: {"70": 0.5, "80": 0.5}) as healthy:  # another port: base_url is operational
        again = run(make_cfg(healthy.url))
    assert healthy.count == 3  # the failed ones only; the others come from the cache
    assert again["eval/quality_n_unscored"] == 0 and again["eval/quality"] == pytest.approx(75.0)
    assert (d / "stages" / "judge.json").exists()
    assert load_json(d / "metrics" / "openai.json")["eval/quality_n_unscored"] == 0  # made again, not kept


# --- judge=hf: the same rule over a local model's next-token distribution --------------------------

@pytest.fixture(scope="module")
def tiny_judge_model():
    from grasp_bench import models
    from tests.conftest import compose_config

    cfg = compose_config("model=tiny")
    cache = cfg.paths.cache
    return cache, models.load_tokenizer(cfg.model, cache), models.load_base(cfg.model, cache)


def reference_top(tokenizer, model, prompt: str) -> list[tuple[str, float]]:
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids).logits[0, -1].float(), -1)
    p, i = probs.topk(20)
    return [(tokenizer.decode([t]), q) for t, q in zip(i.tolist(), p.tolist(), strict=True)]


def test_hf_judge_reads_the_models_next_token_distribution(tiny_judge_model, tmp_path):
    import hydra.utils

    from tests.conftest import compose_config

    cache, tokenizer, model = tiny_judge_model
    judge = hydra.utils.instantiate(compose_config("judge=hf", "judge.model=tiny:2x64", "judge.batch_size=3",
                                                   f"judge.cache_dir={tmp_path / 'c'}").judge)
    assert isinstance(judge, HFJudge) and judge.model_cache == cache
    prompts = ["Rate: 5", "A much longer judge prompt, so that the batch is left-padded: rate it 0-100.", "Hi"]
    batched = judge.next_token_top(tokenizer, model, prompts)
    for prompt, top in zip(prompts, batched, strict=True):
        ref = reference_top(tokenizer, model, prompt)
        assert [t for t, _ in top] == [t for t, _ in ref]
        assert [p for _, p in top] == pytest.approx([p for _, p in ref], rel=1e-4)

    gens = [gen(i, p) for i, p in enumerate(prompts)]
    judge.run(gens, {"free": {"q": {"prompt": TEMPLATE}}}, tmp_path / "j.jsonl")
    for row, g in zip(read_jsonl(tmp_path / "j.jsonl"), gens, strict=True):
        score, raw = score_from_top(reference_top(tokenizer, model, fill_prompt({"prompt": TEMPLATE}, g)))
        assert row["score"] == score and row["raw"]["numeric_mass"] == pytest.approx(raw["numeric_mass"], abs=1e-5)
        assert set(row["raw"]["top"]) == set(raw["top"])

    def no_model(*_):
        raise AssertionError("a rerun must be answered from the cache")

    judge.rate = no_model
    judge.run(gens, {"free": {"q": {"prompt": TEMPLATE}}}, tmp_path / "again.jsonl")
    assert [r["score"] for r in read_jsonl(tmp_path / "again.jsonl")] == [
        r["score"] for r in read_jsonl(tmp_path / "j.jsonl")]


@pytest.mark.slow
def test_hf_judge_with_the_embedded_smollm2(tmp_path):
    """The real 135M model: a number-asking prompt puts mass on digit tokens (0.18 measured: below the 0.25 the rule
    asks for, so this small model's verdict is "unscored", not a number), and the batched pass is the reference's."""
    from tests.conftest import compose_config

    cache = compose_config().paths.cache
    judge = HFJudge(model="embedded:smollm2-135m-instruct", model_cache=cache, cache_dir=tmp_path / "c")
    prompt = "On a scale of 0 to 100, how polite is this answer: 'Thank you so much!'? Reply with only the number."
    tokenizer, model = judge._load()
    ((score, raw),) = [score_from_top(top) for top in judge.next_token_top(tokenizer, model, [prompt])]
    assert 0.1 < raw["numeric_mass"] < 0.25 and score is None
    assert any(t.strip().isdigit() for t, _ in sorted(raw["top"].items(), key=lambda kv: -kv[1])[:3])
    assert math.isclose(sum(raw["top"].values()), sum(p for _, p in reference_top(tokenizer, model, prompt)),
                        rel_tol=1e-4)
    json.dumps(raw)


# --- real rate limits: Retry-After, a tokens-per-minute pace, a cache shared by many writers ------------------

@pytest.mark.parametrize("header", ["retry-after=1", "retry-after-ms=1000"])
def test_a_429_with_retry_after_waits_what_it_says(tmp_path, header):
    """The backoff is 10 ms; the server asks for 1 s: the retry comes no sooner, and every request waits."""
    gens = [gen(i, f"k={i}" + (" limited" if i == 0 else "")) for i in range(4)]
    scorers = {"free": {"q": {"prompt": TEMPLATE}}}
    faults = lambda p, k: f"429 {header}" if "limited" in p and k == 0 else None
    with FakeOpenAI(respond=scripted, latency_s=0.05, faults=faults) as server:
        judge(server, tmp_path / "c", concurrency=1).run(gens, scorers, tmp_path / "j.jsonl")
    limited = fill_prompt({"prompt": TEMPLATE}, gens[0])
    first, retry = server.arrivals[limited]
    assert retry - first >= 1.0  # the backoff alone would retry after ~0.01 s
    others = [t for p, ts in server.arrivals.items() if p != limited for t in ts]
    assert all(t >= first + 1.0 for t in others)  # concurrency=1: the queued requests waited the pause out too
    assert [r["score"] for r in read_jsonl(tmp_path / "j.jsonl")] == pytest.approx([expected(i) for i in range(4)])


def test_a_429_without_retry_after_backs_off_as_before(tmp_path):
    gens = [gen(0, "k=3 limited")]
    with FakeOpenAI(respond=scripted, faults=lambda p, k: "429" if k == 0 else None) as server:
        judge(server, tmp_path / "c").run(gens, {"free": {"q": {"prompt": TEMPLATE}}}, tmp_path / "j.jsonl")
    first, retry = next(iter(server.arrivals.values()))
    assert retry - first < 0.5


def test_tpm_paces_requests_to_the_token_budget(tmp_path):
    """10 prompts of ~100 tokens at 60,000 tokens a minute (1,000 a second): 0.1 s apart, 0.9 s first to last."""
    gens = [gen(i, f"k={i} " + "x" * 330) for i in range(10)]
    scorers = {"free": {"q": {"prompt": TEMPLATE}}}
    tokens = [request_tokens(fill_prompt({"prompt": TEMPLATE}, g)) for g in gens]
    assert all(95 <= n <= 110 for n in tokens)
    with FakeOpenAI(respond=scripted) as server:
        judge(server, tmp_path / "c", concurrency=10, tpm=60_000).run(gens, scorers, tmp_path / "j.jsonl")
    times = sorted(t for ts in server.arrivals.values() for t in ts)
    assert times[-1] - times[0] >= sum(tokens[:-1]) / 1000 * 0.95
    with FakeOpenAI(respond=scripted) as server:  # unpaced: all at once
        judge(server, tmp_path / "c2", concurrency=10).run(gens, scorers, tmp_path / "k.jsonl")
    times = sorted(t for ts in server.arrivals.values() for t in ts)
    assert times[-1] - times[0] < 0.5


def _write_ratings(cache_dir: str, writer: int, n: int) -> None:
    cache = JudgeCache(cache_dir, "openai:judge-model")
    for i in range(n):
        cache.add(f"prompt {writer}/{i} " + "y" * (i % 50) * 40, float(i % 101), {"writer": writer, "i": i})
    cache.close()


def test_the_cache_takes_concurrent_writers_without_torn_or_lost_lines(tmp_path):
    """Four processes write 300 ratings each into one cache at once: every rating is read back, every line whole."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_ratings, args=(str(tmp_path), w, 300)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0] * 4
    lines = [line for f in tmp_path.rglob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(lines) == 1200 and all(json.loads(line)["model"] == "openai:judge-model" for line in lines)
    cache = JudgeCache(tmp_path, "openai:judge-model")
    assert len(cache.entries) == 1200
    assert cache.get("prompt 3/299 " + "y" * 49 * 40) == (float(299 % 101), {"writer": 3, "i": 299})


def test_the_cache_reads_the_single_file_of_older_versions(tmp_path):
    old = {"model": "openai:judge-model", "prompt_sha256": __import__("hashlib").sha256(b"old").hexdigest(),
           "score": 42.0, "raw": {}}
    (tmp_path / "openai_judge-model.jsonl").write_text(json.dumps(old) + "\n" + '{"torn')
    assert JudgeCache(tmp_path, "openai:judge-model").get("old") == (42.0, {})
