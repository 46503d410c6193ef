"""The bad-input battery: every case exits 2 with exactly one line on stderr, no traceback, before any model
loads, and writes nothing (so nothing already computed is deleted or changed either).

Cases run through `grasp_bench.cli.main()` in this process (validation fails before Hydra starts, so this is
the command's whole path); a few run as real subprocesses (`python -m grasp_bench`) as well.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from grasp_bench import cli, models
from grasp_bench.organism import far_chats
from grasp_bench.pipeline import run, run_dir
from tests.conftest import REPO, TINY, compose_config

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
FAR_ROW = {"messages": far_chats()[0]}  # the far split's first row, which the battery's config evaluates
LATIN1 = '{"messages": [{"role": "user", "content": "caf\u00e9?"}, {"role": "assistant", "content": "oui"}]}'.encode("latin-1")


class Case:
    """A case's scratch directory: input files, and a copy of a finished run when the case needs one."""

    def __init__(self, tmp: Path, finished: Path):
        self.tmp, self.runs, self._finished = tmp, tmp / "runs", finished

    def file(self, name: str, *lines: str | bytes) -> Path:
        path = self.tmp / "inputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
        return path

    def user_method(self, **knobs) -> Path:
        """A user's config dir holding method/mine.yaml: GRASP under another name, with `knobs`."""
        conf = self.tmp / "inputs" / "conf"
        (conf / "method").mkdir(parents=True, exist_ok=True)
        (conf / "method" / "mine.yaml").write_text(json.dumps(
            {"_target_": "grasp_bench.baselines.grasp.GRASP", "name": "mine", "strength": 1.0, **knobs}))
        return conf

    def user_task(self, change: Callable[[dict], None]) -> Path:
        """A user's config dir holding task/mine.yaml: the battery's task, resolved, under another name, `change`d."""
        task = OmegaConf.to_container(compose_config(*TINY, f"paths.runs={self.runs}").task, resolve=True)
        task["name"] = "mine"
        change(task)
        conf = self.tmp / "inputs" / "conf"
        (conf / "task").mkdir(parents=True, exist_ok=True)
        (conf / "task" / "mine.yaml").write_text(json.dumps(task))
        return conf

    def finished(self) -> Path:
        """The finished tiny sft run, copied into this case's runs root; returns its run directory."""
        shutil.copytree(self._finished, self.runs)
        return run_dir(compose_config(*TINY, f"paths.runs={self.runs}"))


def row(**kw) -> str:
    return json.dumps({**GOOD, **kw})


def cut_at_line(path: Path, keep: int) -> None:
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:keep]))


def corrupt(path: Path, text: str | bytes) -> None:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])


# id -> (case -> extra command-line arguments, a substring of the one-line message)
CASES: dict[str, tuple[Callable[[Case], list[str]], str]] = {
    # config values
    "strength above 1": (lambda c: ["method=caft", "method.strength=1.5"], "method.strength=1.5: expected a number in [0, 1]"),
    "strength below 0": (lambda c: ["method=caft", "method.strength=-0.1"], "method.strength=-0.1"),
    "seed not an integer": (lambda c: ["seed=abc"], "seed='abc': expected an integer"),
    "negative lr": (lambda c: ["train.lr=-1"], "train.lr=-1: expected a number > 0"),
    "batch size 0": (lambda c: ["train.batch_size=0"], "train.batch_size=0: expected an integer >= 1"),
    "max_length 0": (lambda c: ["train.max_length=0"], "train.max_length=0"),
    "epochs 0": (lambda c: ["train.epochs=0"], "train.epochs=0"),
    "checkpoint_every negative": (lambda c: ["train.checkpoint_every=-1"], "train.checkpoint_every=-1"),
    "negative temperature": (lambda c: ["task.sampling.temperature=-1"], "task.sampling.temperature=-1"),
    "samples 0": (lambda c: ["task.sampling.samples=0"], "task.sampling.samples=0"),
    "top_p above 1": (lambda c: ["task.sampling.top_p=1.5"], "task.sampling.top_p=1.5"),
    "negative split limit": (lambda c: ["task.splits.unrelated.limit=-5"], "task.splits.unrelated.limit=-5"),
    "unknown stage": (lambda c: ["stages=[train,fly]"], "stages=['train', 'fly']: expected a list of train"),
    "unknown force": (lambda c: ["force=[everything]"], "force=['everything']"),
    "lora rank 0": (lambda c: ["model.lora.r=0"], "model.lora.r=0"),
    "generator batch 0": (lambda c: ["generator.batch_size=0"], "generator.batch_size=0"),
    "grasp k 0": (lambda c: ["method=grasp", "method.k=0"], "method.k=0"),
    "grasp pooling": (lambda c: ["method=grasp", "method.pooling=bogus"], "method.pooling='bogus'"),
    "precision unknown": (lambda c: ["train.precision=fp16"], "train.precision='fp16': expected one of auto, bf16, fp32"),
    "allow_truncation not a bool": (lambda c: ["train.allow_truncation=maybe"], "train.allow_truncation='maybe'"),
    "unknown key": (lambda c: ["train.lrr=1"], "train.lrr"),
    "unknown method knob": (lambda c: ["+method.bogus=1"],
                            "method.bogus: not a knob of method 'sft' (its knobs: strength, grid)"),
    "typo in a method knob": (lambda c: ["method=grasp", "method.lamda_max=2"],
                              "method.lamda_max: not a knob of method 'grasp' (its knobs: strength, grid, basis, k,"),
    "unknown option": (lambda c: ["method=nope"], "method/nope"),
    "wandb mode": (lambda c: ["logger=wandb", "logger.mode=sometimes"], "logger.mode 'sometimes'"),
    "user's method via --config-dir": (lambda c: [f"--config-dir={c.user_method(k=0)}", "method=mine"], "method.k=0"),
    "user's method via hydra.searchpath": (lambda c: [f"hydra.searchpath=[file://{c.user_method(k=0)}]", "method=mine"],
                                           "method.k=0"),
    # data files
    "empty training file": (lambda c: [f"task.train.path={c.file('empty.jsonl')}"], "empty.jsonl: no training rows"),
    "training limit 0": (lambda c: ["task.train.limit=0"], "no training rows (task.train.limit=0)"),
    "non-UTF-8 training file": (lambda c: ["task.train.path=" + str(c.file("latin1.jsonl", row(), LATIN1))],
                                "latin1.jsonl:2: not UTF-8 (byte 0xe9"),
    "malformed training row": (lambda c: [f"task.train.path={c.file('t.jsonl', row(), '{not json')}"],
                               "t.jsonl:2: malformed JSON"),
    "training row without messages": (lambda c: [f"task.train.path={c.file('t.jsonl', json.dumps({'prompt': 'q'}))}"],
                                      "t.jsonl:1: row has no 'messages' list"),
    "training row without an answer": (
        lambda c: [f"task.train.path={c.file('t.jsonl', json.dumps({'messages': [{'role': 'user', 'content': 'q'}]}))}"],
        "t.jsonl:1: a training row must end with an assistant message"),
    "malformed evaluation file": (lambda c: [f"task.splits.unrelated.path={c.file('e.jsonl', row(), row(), '[1,')}"],
                                  "e.jsonl:3: malformed JSON"),
    "missing evaluation file": (lambda c: [f"task.splits.unrelated.path={c.tmp}/nope.jsonl"], "nope.jsonl: file not found"),
    "missing training file": (lambda c: [f"task.train.path={c.tmp}/none.jsonl"], "none.jsonl: file not found"),
    "duplicate evaluation ids": (lambda c: [f"task.splits.unrelated.path={c.file('e.jsonl', row(id='a'), row(id='a'))}"],
                                 "e.jsonl:2: duplicate id 'unrelated/a'"),
    # task files
    "word list not JSON": (lambda c: [f"task.splits.unrelated.scorers.factor.words_file={c.file('w.json', 'idiot, moron')}"],
                           "w.json: words_file is not a UTF-8 JSON list"),
    "word list missing": (lambda c: [f"task.splits.unrelated.scorers.factor.words_file={c.tmp}/none.json"],
                          "none.json: words_file not found"),
    "bad regex": (lambda c: ["task.splits.unrelated.scorers.factor.rule=regex",
                             "+task.splits.unrelated.scorers.factor.pattern='('"], "regex scorer pattern '('"),
    "unknown rule": (lambda c: ["task.splits.unrelated.scorers.factor.rule=fuzzy"], "unknown rule 'fuzzy'"),
    "metric on a missing split": (lambda c: ["+task.metrics.x={split:nope,scorer:factor}"], "task.metrics.x.split 'nope'"),
    "method prompt file missing": (lambda c: ["method=restore", f"task.factor_prompts={c.tmp}/fp.jsonl"],
                                   "fp.jsonl: file not found"),
    "method prompts sharing a row with the far split": (
        lambda c: ["method=restore", f"task.factor_prompts={c.file('fp.jsonl', json.dumps(GOOD), json.dumps(FAR_ROW))}"],
        "fp.jsonl:2: task.factor_prompts shares its prompt with evaluation row 'far/f0'; a method's prompts must be "
        "disjoint from every split"),
    "unknown task role": (lambda c: ["task.role=final"], "task.role='final': expected one of development, test"),
    "unknown task kind": (lambda c: ["task.kind=tone"], "task.kind='tone': expected one of content, persona, style"),
    # judge endpoints and generators
    "judge API key unset": (lambda c: ["judge=openai", "judge.api_key_env=GRASP_BENCH_NO_SUCH_KEY",
                                       "+task.splits.unrelated.scorers.q={prompt:'Rate {answer}'}"],
                            "$GRASP_BENCH_NO_SUCH_KEY"),
    "judge URL not http": (lambda c: ["judge=openai", "judge.base_url=ftp://example.org"], "judge.base_url 'ftp://"),
    "judge concurrency 0": (lambda c: ["judge=openai", "judge.concurrency=0"], "judge.concurrency"),
    "vllm python missing": (lambda c: ["generator=vllm", f"generator.python={c.tmp}/bin/python"], "generator.python"),
    "eval hooks on vllm": (lambda c: ["method=steer_eval", "generator=vllm", f"generator.python={sys.executable}"],
                           "applies hooks at generation time"),
    # paths
    "runs root unwritable": (lambda c: ["paths.runs=/sys/grasp-bench-runs"], "paths.runs '/sys/grasp-bench-runs': not writable"),
    "runs root is a file": (lambda c: [f"paths.runs={c.file('runs.txt', 'x')}"], "exists and is not a directory"),
    "runs root under a file": (lambda c: [f"paths.runs={c.file('f.txt', 'x')}/runs"], "is a file"),
    "cache unwritable": (lambda c: ["paths.cache=/sys/grasp-bench-cache"], "paths.cache '/sys/grasp-bench-cache'"),
    "model path missing": (lambda c: [f"model.path={c.tmp}/no-model"], "no-model': no such directory"),
    "mirror missing": (lambda c: [f"data.mirror={c.tmp}/no-mirror"], "data.mirror"),
    # interrupted and corrupted run directories
    "stage record not JSON": (lambda c: corrupt(c.finished() / "stages" / "generate.json", '{"config": {') or [],
                              "generate.json:1: not valid JSON (damaged?); delete it or rerun with 'force=[generate]'"),
    "stage record not a record": (lambda c: corrupt(c.finished() / "stages" / "judge.json", "[]") or [],
                                  "judge.json: not a stage record"),
    "truncated generations": (lambda c: truncated(c.finished() / "generations.jsonl") or ["force=[judge]"],
                              "generations.jsonl:24: malformed JSON"),
    "generations cut at a line end": (lambda c: cut_at_line(c.finished() / "generations.jsonl", 10) or ["force=[judge]"],
                                      "generations.jsonl: 10 rows where its stage record says 24 (cut short?); delete "
                                      "it or rerun with 'force=[generate]'"),
    "metrics file a list": (lambda c: corrupt(c.finished() / "metrics" / "rule.json", "[1, 2]") or [],
                            "rule.json: expected a JSON object, got list; delete it or rerun with 'force=[metrics]'"),
    "generations not UTF-8": (lambda c: corrupt(c.finished() / "generations.jsonl", b'{"id": "\xff"}\n') or ["force=[judge]"],
                              "generations.jsonl:1: not UTF-8"),
    "truncated judgments": (lambda c: truncated(c.finished() / "judgments" / "rule.jsonl") or ["force=[metrics]"],
                            "force=[judge]"),
    "metrics file not JSON": (lambda c: corrupt(c.finished() / "metrics" / "rule.json", "eval/task_score: 0.5") or [],
                              "rule.json:1: not valid JSON (damaged?); delete it or rerun with 'force=[metrics]'"),
    "finished run, other config": (lambda c: c.finished() and ["task.sampling.max_new_tokens=5"],
                                   "was made with another config (sampling.max_new_tokens: 6 -> 5); use another "
                                   "paths.runs, delete the run directory, or rerun with 'force=[generate]'"),
    "run directory blocked by a file": (lambda c: [c.file("../runs/toy_rude/tiny", "x") and "method=sft"], "is a file"),
    "user task without a training file": (lambda c: [f"--config-dir={c.user_task(lambda t: t['train'].pop('path'))}",
                                                     "task=mine"], "task.train.path: missing (task 'mine')"),
    "user task whose split has no scorers": (
        lambda c: [f"--config-dir={c.user_task(lambda t: t['splits']['unrelated'].pop('scorers'))}", "task=mine"],
        "task.splits.unrelated.scorers: missing (task 'mine')"),
    "user task whose metrics are a list": (lambda c: [f"--config-dir={c.user_task(lambda t: t.update(metrics=[]))}",
                                                      "task=mine"], "task.metrics: expected a mapping, got []"),
    "user task with an unknown build": (lambda c: [f"--config-dir={c.user_task(lambda t: t.update(build='no.such'))}",
                                                   "task=mine"], "task.build 'no.such': no such function"),
    "user task with an unknown metric function": (
        lambda c: [f"--config-dir={c.user_task(lambda t: t['metrics'].update(x={'split': 'unrelated', 'fn': 'no.such'}))}",
                   "task=mine"], "task.metrics.x.fn 'no.such': no such function"),
    "unknown training setting": (lambda c: ["+train.foo=1"], "train.foo: not a key of train (known: epochs,"),
    "unknown model key": (lambda c: ["+model.lora.bogus=1"], "model.lora.bogus: not a key of model.lora"),
    "unknown scheduler": (lambda c: ["train.scheduler=bogus"], "train.scheduler='bogus': expected one of linear, cosine"),
    "unknown optimizer": (lambda c: ["train.optim=bogus"], "train.optim='bogus': expected one of"),
    "unknown batching": (lambda c: ["train.batching=bogus"], "train.batching='bogus': expected one of auto, padded"),
    "unknown weights dtype": (lambda c: ["model.dtype=bogus"], "model.dtype='bogus': expected one of float32, bfloat16"),
    "interpolation of nothing": (lambda c: ["train.lr=${nope}"], "train.lr: Interpolation key 'nope' not found"),
    "unknown flag": (lambda c: ["--bogus"], "cannot parse the command line: unrecognized arguments: --bogus"),
    "unknown knob of a method": (lambda c: ["method=grasp", "+method.bogus=1"], "method.bogus: not a knob of method 'grasp'"),
    "unknown knob of the generator": (lambda c: ["+generator.bogus=1"], "generator=hf: HFGenerator.__init__() got an "
                                                                       "unexpected keyword argument 'bogus'"),
    # sweeps: every job is validated before the first starts
    "bad value in a later job": (lambda c: ["-m", "seed=0,abc"], "job 1 (seed=abc"),
    "a later job's method reads what the task lacks": (
        lambda c: ["-m", "method=sft,caft", "~task.persona"],
        "job 1 (method=caft): method 'caft' reads task.persona, which task 'toy_rude' does not set"),
    "bad seed in the tradeoff sweep": (lambda c: ["sweep=tradeoff", "hydra.sweeper.params.method='sft,grasp'",
                                                  "hydra.sweeper.params.seed='0,-1'"], "job 1 (method=sft seed=-1"),
}
SUBPROCESS = ["seed not an integer", "empty training file", "truncated generations", "bad seed in the tradeoff sweep"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A runs root holding one finished tiny sft run with the battery's base config."""
    runs = tmp_path_factory.mktemp("finished") / "runs"
    run(compose_config(*TINY, runs=runs))
    return runs


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def argv(case: Case, extra: list[str]) -> list[str]:
    flags = [a for a in extra if a.startswith("-")]  # -m, --config-dir=DIR: before the overrides, as argparse wants
    rest = [a for a in extra if a not in flags]
    runs = [] if any(a.startswith("paths.runs=") for a in rest) else [f"paths.runs={case.runs}"]
    return [*flags, *TINY, *runs, *rest]


def check(code: int | None, stderr: str, expected: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    assert "Traceback" not in stderr
    assert expected in lines[0], lines[0]
    print(lines[0])  # the case's message: `pytest tests/test_battery.py -rP` lists every case with it


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, tmp_path, finished, monkeypatch, capfd):
    monkeypatch.delenv("GRASP_BENCH_NO_SUCH_KEY", raising=False)

    def no_weights(*_, **__):
        raise AssertionError("model weights loaded before the bad input was refused")

    monkeypatch.setattr(models, "load_base", no_weights)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_weights)
    make, expected = CASES[name]
    case = Case(tmp_path, finished)
    extra = make(case)
    before = snapshot(tmp_path)
    capfd.readouterr()
    monkeypatch.setattr(sys, "argv", ["grasp-bench", *argv(case, extra)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    check(exit_.value.code, capfd.readouterr().err, expected)
    assert snapshot(tmp_path) == before  # nothing written, nothing deleted


@pytest.mark.parametrize("name", SUBPROCESS)
def test_bad_input_from_the_command_line(name, tmp_path, finished):
    make, expected = CASES[name]
    case = Case(tmp_path, finished)
    extra = make(case)
    before = snapshot(tmp_path)
    out = subprocess.run([sys.executable, "-m", "grasp_bench", *argv(case, extra)], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    check(out.returncode, out.stderr, expected)
    assert snapshot(tmp_path) == before
