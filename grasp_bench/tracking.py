"""Experiment trackers. The run directory is the source of truth; a tracker only mirrors it.

`logger=none` (default) writes nothing beyond the run directory. `logger=wandb` mirrors each job into one
Weights & Biases run (group `<task>/<model>`, job_type `<method>`, tags task/model/method/seed) and the report
into one `job_type=report` run. A job's W&B run id is derived from its run directory (relative to the runs root)
and judge, so rerunning a job resumes its W&B run (`resume="allow"`) instead of making a second one; the runs
root's own random id (`<runs>/.wandb/root_id`) keeps two runs roots apart in one project. W&B writes every file
under the runs root (`<run dir>/wandb/`, `<runs>/.wandb/`), never under $HOME; `logger.mode=offline` needs no
network and `wandb sync` uploads later. `WANDB_MODE` alone does not turn W&B on (`wandb_mode_notice`).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra.utils
from omegaconf import DictConfig, OmegaConf

SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "credential")


class NullLogger:
    name = "none"

    def __init__(self, name: str = "none", **_: Any):
        self.name = name

    def start(self, cfg, run_dir: Path) -> None: ...

    def log_step(self, row: dict) -> None: ...

    def summary(self, metrics: dict, generations: Path | None = None, judgments: Path | None = None) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...

    def report(self, runs_root: Path, results, plots: list[Path], seed_means=None, verdict=None,
               pairs=None) -> None: ...


def make_logger(logger_cfg, cfg=None, run_dir: Path | None = None):
    logger = NullLogger() if logger_cfg is None else hydra.utils.instantiate(logger_cfg)
    if cfg is not None:
        logger.start(cfg, run_dir)
    return logger


def wandb_mode_notice(logger_name: str, logger_mode: str | None = None) -> str | None:
    """The one line saying that W&B stays off, and how to turn it on, where a user would expect it on: WANDB_MODE
    set with another logger than wandb (the run directory is the record; a tracker is opted into per command), or
    logger=wandb whose mode is disabled (its default without WANDB_MODE)."""
    mode = os.environ.get("WANDB_MODE")
    if logger_name == "wandb":
        if logger_mode == "disabled":
            return "note: logger=wandb logs nothing with logger.mode=disabled; set logger.mode=offline (or online)"
        return None
    if not mode or mode == "disabled":
        return None
    return (f"note: WANDB_MODE={mode} alone does not turn W&B on (logger={logger_name}); add logger=wandb "
            f"(its mode follows WANDB_MODE) or logger=wandb logger.mode=offline")


def quiet_transformers_import() -> None:
    """Import transformers' integrations with WANDB_MODE hidden: at import they print "Running in WANDB offline
    mode" whenever WANDB_MODE=offline, although grasp-bench never lets the Trainer report to W&B (report_to=[])."""
    mode = os.environ.pop("WANDB_MODE", None)
    try:
        import transformers.integrations.integration_utils  # noqa: F401
    finally:
        if mode is not None:
            os.environ["WANDB_MODE"] = mode


def root_id(runs_root: Path) -> str:
    """The runs root's own random id, made once (`<runs>/.wandb/root_id`): it travels with the folder."""
    path = Path(runs_root).expanduser() / ".wandb" / "root_id"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(secrets.token_hex(8), encoding="utf-8")
        try:
            os.link(tmp, path)  # the first writer wins; a concurrent job reads the same id
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text(encoding="utf-8").strip()


def run_id(runs_root: Path, *parts: str) -> str:
    """A W&B run id: the runs root's id and `parts` (a run directory relative to the root, a judge), digested."""
    return hashlib.sha256("\n".join([root_id(runs_root), *parts]).encode()).hexdigest()[:32]


def relative_run(runs_root: Path, run_dir: Path) -> str:
    root, run = Path(runs_root).expanduser().resolve(), Path(run_dir).expanduser().resolve()
    return str(run.relative_to(root)) if run.is_relative_to(root) else str(run)


def is_secret(key: str) -> bool:
    """`api_key`, `hf_token`, `client_secret`, `apikey` are secrets; `max_new_tokens`, `tokenizer` are not."""
    words = re.split(r"[^a-z0-9]+", str(key).lower())
    return any(w in SECRET_WORDS or w.endswith(SECRET_WORDS) for w in words)


def public_config(cfg: DictConfig) -> dict:
    """The resolved config without any secret-named key (they are dropped before resolving)."""
    def drop(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: drop(v) for k, v in node.items() if not is_secret(k)}
        if isinstance(node, list):
            return [drop(v) for v in node]
        return node

    unresolved = drop(OmegaConf.to_container(cfg, resolve=False))
    return OmegaConf.to_container(OmegaConf.create(unresolved), resolve=True)


@contextmanager
def wandb_files_under(root: Path) -> Iterator[None]:
    """Point every W&B directory (run files, cache, artifact staging, settings) under `root/.wandb`."""
    base = Path(root).expanduser().resolve() / ".wandb"
    dirs = {"WANDB_DIR": base, "WANDB_CACHE_DIR": base / "cache", "WANDB_DATA_DIR": base / "data",
            "WANDB_CONFIG_DIR": base / "config"}
    saved = {k: os.environ.get(k) for k in dirs}
    for k, d in dirs.items():
        d.mkdir(parents=True, exist_ok=True)
        os.environ[k] = str(d)
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def generations_table(generations: Path, judgments: Path | None, rows: int | None, seed: int = 0):
    """A `wandb.Table` of sampled generations, one column per scorer of the judge."""
    import wandb

    from grasp_bench.artifacts import read_jsonl

    gens = read_jsonl(generations)
    scores: dict[tuple, dict[str, float | None]] = {}
    for j in read_jsonl(judgments) if judgments is not None and judgments.exists() else []:
        scores.setdefault((j["id"], j["sample"]), {})[j["scorer"]] = j["score"]
    scorers = sorted({s for by_scorer in scores.values() for s in by_scorer})
    picked = range(len(gens)) if rows is None or rows >= len(gens) else sorted(
        random.Random(seed).sample(range(len(gens)), rows))
    table = wandb.Table(columns=["id", "split", "sample", "prompt", "completion", *scorers])
    for i in picked:
        g = gens[i]
        prompt = next((m["content"] for m in reversed(g["messages"]) if m["role"] == "user"), "")
        by_scorer = scores.get((g["id"], g["sample"]), {})
        table.add_data(g["id"], g.get("split"), g["sample"], prompt, g["completion"],
                       *(by_scorer.get(s) for s in scorers))
    return table


def results_table(df):
    """A `wandb.Table` of results.csv rows (NaN becomes an empty cell)."""
    import wandb

    df = df.astype(object).where(df.notna(), None)
    return wandb.Table(columns=[str(c) for c in df.columns], data=df.values.tolist())


def tradeoff_charts(seed_means) -> dict[str, Any]:
    """Per (task, model, judge) of the seed-mean table (report.summary_table): a W&B line chart of
    eval/spurious_rate against eval/task_score with one series per method variant through its strengths' seed
    means (base and sft: one point each)."""
    import wandb

    from grasp_bench.metrics import X, Y

    charts: dict[str, Any] = {}
    if X not in seed_means or Y not in seed_means:
        return charts
    for (task, model, judge), part in seed_means.groupby(["task", "model", "judge"], sort=False):
        xs, ys, keys = [], [], []
        for variant, v in part.sort_values("strength").groupby("variant", sort=True):
            v = v.dropna(subset=[X, Y])
            if len(v):
                xs.append([float(x) for x in v[X]])
                ys.append([float(y) for y in v[Y]])
                keys.append(str(variant))
        if keys:
            charts[f"tradeoff/{task}/{model}/{judge}"] = wandb.plot.line_series(
                xs, ys, keys=keys, xname=X, title=f"{Y} against {X} ({task}, {model}, judge {judge}; seed means)")
    return charts


class WandbLogger(NullLogger):
    """One W&B run per job; `mode`: disabled (default), offline (no network, `wandb sync` later) or online."""

    name = "wandb"

    def __init__(self, name: str = "wandb", project: str = "grasp-bench", entity: str | None = None,
                 mode: str = "disabled", tags: list[str] | None = None, table_rows: int | None = 64,
                 settings: dict | None = None):
        if mode not in ("disabled", "offline", "online"):
            from grasp_bench.artifacts import BadInput

            raise BadInput(f"logger.mode '{mode}': expected disabled, offline or online")
        self.name, self.project, self.entity, self.mode = name, project, entity, mode
        self.tags, self.table_rows, self.settings = list(tags or []), table_rows, dict(settings or {})
        self.run = None
        self._files = None
        self._seed = 0

    def _init(self, runs_root: Path, run_dir: Path, **kwargs: Any):
        import wandb

        self._files = wandb_files_under(runs_root)
        self._files.__enter__()
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            return wandb.init(project=self.project, entity=self.entity, mode=self.mode, dir=str(run_dir),
                              reinit="finish_previous", settings=wandb.Settings(**self.settings), resume="allow",
                              **kwargs)
        except BaseException:
            self._close_files()
            raise

    def start(self, cfg, run_dir: Path) -> None:
        if self.mode == "disabled":
            return
        from grasp_bench.identity import method_dirname

        self._seed = int(cfg.seed)
        runs = Path(cfg.paths.runs)
        self.run = self._init(
            runs, Path(run_dir), group=f"{cfg.task.name}/{cfg.model.name}", job_type=cfg.method.name,
            name=f"{method_dirname(cfg.method)}-s{float(cfg.method.strength):g}-seed{cfg.seed}",
            id=run_id(runs, relative_run(runs, run_dir), str(cfg.judge.name)), config=public_config(cfg),
            tags=[*self.tags, f"task={cfg.task.name}", f"model={cfg.model.name}", f"method={cfg.method.name}",
                  f"seed={cfg.seed}"])

    def log_step(self, row: dict) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in row.items() if k != "step" and v is not None}, step=int(row["step"]))

    def summary(self, metrics: dict, generations: Path | None = None, judgments: Path | None = None) -> None:
        if self.run is None:
            return
        self.run.summary.update(metrics)
        if generations is not None and generations.exists() and self.table_rows != 0:
            self.run.log({"generations": generations_table(generations, judgments, self.table_rows, self._seed)})

    def report(self, runs_root: Path, results, plots: list[Path], seed_means=None, verdict=None,
               pairs=None) -> None:
        """One `job_type=report` run per runs root (a rerun of the report resumes it): the results, seed-mean,
        verdict and verdict-pairs tables, one trade-off chart per task/model/judge (a line per method variant
        through its strengths' seed means; the error bars are in the seed-mean table and in the PNG plots) and the
        PNG plots."""
        if self.mode == "disabled" or results.empty:
            return
        import wandb

        groups = sorted({f"{t}/{m}" for t, m in zip(results["task"], results["model"], strict=True)})
        run = self._init(Path(runs_root), Path(runs_root).expanduser() / ".wandb", job_type="report", name="report",
                         id=run_id(Path(runs_root), "report"), group=groups[0] if len(groups) == 1 else None,
                         tags=[*self.tags, *(f"task={t}" for t in sorted(set(results["task"])))],
                         config={"runs_root": str(runs_root)})
        try:
            logged: dict[str, Any] = {"results": results_table(results)}
            for key, df in (("seed_means", seed_means), ("verdict", verdict), ("verdict_pairs", pairs)):
                if df is not None and len(df):
                    logged[key] = results_table(df)
            if seed_means is not None:
                logged |= tradeoff_charts(seed_means)
            for p in plots:
                logged[f"plots/{Path(p).stem}"] = wandb.Image(str(p))
            run.log(logged)
            run.finish()
        except BaseException:
            run.finish(exit_code=1)
            raise
        finally:
            self._close_files()

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
        self._close_files()

    def _close_files(self) -> None:
        if self._files is not None:
            self._files.__exit__(None, None, None)
            self._files = None
