"""judge=openai throughput against the loopback server (grasp_bench.testing_server) -> bench/results/judge.json.

    PYTHONPATH=$PWD python bench/judge.py                 # 3 rounds of 2000 distinct prompts (~25 s)

The server runs in its own process (so it does not share the client's interpreter lock) and sleeps
`latency_s` per request; with `concurrency` requests in flight the ideal rate is concurrency / latency_s.
A round is one `OpenAIJudge.run` from generations to the finished judgments file (prompt filling, requests,
scoring, cache appends, output), with an empty cache, after one uncounted warm-up round (the first run in
a process pays ~1 s of imports). Figures are the median over rounds; the client's CPU seconds per request
show what the shared cores pay for the rate, and the load average how shared they were.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
OUT = REPO / "bench" / "results" / "judge.json"

from grasp_bench.llm_judge import OpenAIJudge  # noqa: E402


def one_round(url: str, n: int, concurrency: int, tmp: Path) -> dict:
    gens = [{"id": f"q/{i}", "split": "q", "sample": 0, "completion": f"answer number {i}",
             "messages": [{"role": "user", "content": f"question {i}"}]} for i in range(n)]
    scorers = {"q": {"aligned": {"prompt": "Rate 0-100.\n{question}\n{answer}"}}}
    judge = OpenAIJudge(model="bench", base_url=url, api_key_env=None, concurrency=concurrency,
                        cache_dir=tmp / "cache")
    before = json.load(urllib.request.urlopen(url.removesuffix("/v1") + "/stats"))["count"]
    cpu, wall = time.process_time(), time.perf_counter()
    judge.run(gens, scorers, tmp / "judgments.jsonl")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stats = json.load(urllib.request.urlopen(url.removesuffix("/v1") + "/stats"))
    rows = [json.loads(line) for line in (tmp / "judgments.jsonl").read_text().splitlines()]
    assert stats["count"] - before == n and all(r["score"] is not None for r in rows), "every request answered"
    return {"seconds": wall, "requests_per_s": n / wall, "client_cpu_ms_per_request": 1000 * cpu / n,
            "server_max_in_flight": stats["max_in_flight"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    server = subprocess.Popen([sys.executable, "-m", "grasp_bench.testing_server", "--latency", str(args.latency)],
                              stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    try:
        url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:  # warm-up, not counted: first imports, connection pool
            one_round(url, 200, args.concurrency, Path(tmp))
        rounds = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                rounds.append(one_round(url, args.requests, args.concurrency, Path(tmp)))
    finally:
        server.terminate()
        server.wait()

    ideal = args.concurrency / args.latency
    rate = statistics.median(r["requests_per_s"] for r in rounds)
    result = {
        "judge_requests_per_s": rate,
        "judge_ideal_requests_per_s": ideal,
        "judge_ratio_to_ideal": rate / ideal,
        "goal_ratio_to_ideal": 0.8,
        "meets_goal": rate / ideal >= 0.8,
        "client_cpu_ms_per_request": statistics.median(r["client_cpu_ms_per_request"] for r in rounds),
        "rounds": rounds,
        "setup": {"requests_per_round": args.requests, "concurrency": args.concurrency,
                  "server_latency_s": args.latency,
                  "server": "grasp_bench.testing_server (ThreadingHTTPServer, own process)"},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_1min_before": load_before, "loadavg_1min_after": os.getloadavg()[0]},
        "command": "PYTHONPATH=$PWD python bench/judge.py " + " ".join(sys.argv[1:]),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
