"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks (no network, no mocks).

It answers `POST /v1/chat/completions` in the OpenAI response shape, with `logprobs.content[0].top_logprobs`
built from a scripted next-token distribution, and records what it saw (requests, Authorization headers,
the most requests in flight at once). Faults are scripted per prompt and attempt: an HTTP error status
("429", "500", "401", ...; "429 retry-after=2" adds that header, "429 retry-after-ms=500"
OpenAI's), "timeout" (a hang longer than the client's timeout), "garbage" (a 200 whose
body is not JSON), or "no_logprobs" (a completion without logprobs, as from a model that has none).

    with FakeOpenAI(respond=lambda prompt: {"80": 0.6, "90": 0.4}) as server:
        ... judge.base_url = server.url ...

    python -m grasp_bench.testing_server --latency 0.1     # prints the base URL, serves until killed;
                                                           # GET /stats gives {"count", "max_in_flight"}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Distribution = Mapping[str, float]  # token -> probability (the rest of the mass is off the top list)


def hashed_score(prompt: str) -> dict[str, float]:
    """Default answer: a score in 0..100 fixed by the prompt's hash, with 0.9 of the mass."""
    n = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16) % 101
    return {str(n): 0.9, "CODE": 0.1}


def completion_body(model: str, dist: Distribution, top_logprobs: int | None) -> dict:
    """A chat.completion of one token; `logprobs` only when asked for, with `top_logprobs` entries."""
    ranked = [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())}
              for t, p in sorted(dist.items(), key=lambda tp: -tp[1]) if p > 0]
    first = ranked[0] if ranked else {"token": "", "logprob": 0.0, "bytes": []}
    logprobs = None if top_logprobs is None else {"content": [{**first, "top_logprobs": ranked[:top_logprobs]}]}
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": "length", "logprobs": logprobs,
                     "message": {"role": "assistant", "content": first["token"]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True      # a hung handler (a scripted timeout) never blocks shutdown
    request_queue_size = 256   # listen backlog: the default 5 drops connections when many clients open at once


class FakeOpenAI:
    """Threaded HTTP server; `url` is the base URL to give an OpenAI client (`.../v1`)."""

    def __init__(self, respond: Callable[[str], Distribution] = hashed_score, latency_s: float = 0.0,
                 faults: Callable[[str, int], str | None] | None = None, hang_s: float = 5.0):
        self.respond, self.latency_s, self.faults, self.hang_s = respond, latency_s, faults, hang_s
        self.lock = threading.Lock()
        self.requests: list[dict] = []          # request bodies, in arrival order
        self.authorization: set[str] = set()    # Authorization header values seen
        self.attempts: dict[str, int] = {}      # prompt -> times seen
        self.arrivals: dict[str, list[float]] = {}  # prompt -> time.monotonic() of each request
        self.in_flight = self.max_in_flight = 0
        self.httpd = _Server(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread: threading.Thread | None = None

    @property
    def count(self) -> int:
        return len(self.requests)

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _answer(self, body: dict) -> tuple[int, bytes, dict[str, str]]:
        """(status, body bytes, extra headers) for one request; sleeps for latency or a scripted hang."""
        prompt = body["messages"][-1]["content"]
        with self.lock:
            attempt = self.attempts.get(prompt, 0)
            self.attempts[prompt] = attempt + 1
            self.arrivals.setdefault(prompt, []).append(time.monotonic())
        fault = self.faults(prompt, attempt) if self.faults else None
        if fault == "timeout":
            time.sleep(self.hang_s)
        elif self.latency_s:
            time.sleep(self.latency_s)
        status, *options = (fault or "-").split()
        if status.isdigit():
            error = {"message": f"scripted HTTP {status}", "type": "fake", "code": status}
            headers = dict(option.split("=", 1) for option in options)  # e.g. retry-after=2
            return int(status), json.dumps({"error": error}).encode(), headers
        if fault == "garbage":
            return 200, b'{"id": "chatcmpl-fake", "choices": [ <<<not json', {}
        top_n = int(body.get("top_logprobs") or 0) if body.get("logprobs") and fault != "no_logprobs" else None
        return 200, json.dumps(completion_body(body.get("model", "fake"), self.respond(prompt), top_n)).encode(), {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a pooled client reuses its connections
            disable_nagle_algorithm = True  # else headers and body, sent apart, meet delayed ACKs: +40 ms each

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - /stats: what the server saw, for a server in another process
                if self.path.rstrip("/") != "/stats":
                    return self._send(404, b'{"error": {"message": "not found"}}')
                with server.lock:
                    stats = {"count": server.count, "max_in_flight": server.max_in_flight}
                self._send(200, json.dumps(stats).encode())

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, b'{"error": {"message": "not found"}}')
                body = json.loads(raw)
                with server.lock:
                    server.requests.append(body)
                    server.authorization.add(self.headers.get("Authorization", ""))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, payload, headers = server._answer(body)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                self._send(status, payload, headers)

            def _send(self, status: int, payload: bytes, headers: Mapping[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
                    self.close_connection = True

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI chat-completions endpoint on 127.0.0.1.")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds of sleep per request")
    args = parser.parse_args()
    server = FakeOpenAI(latency_s=args.latency)
    print(server.url, flush=True)
    try:
        server.httpd.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
