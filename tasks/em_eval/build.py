"""The emergent-misalignment tasks: insecure code (Betley et al., arXiv 2502.17424), its secure and
educational controls, and bad medical advice (Turner, Soligo et al., arXiv 2506.11613).

`build_em_task(data_dir, task)` fetches the files pinned in the manifests `task.source.manifest` and
`task.source.em_manifest` name (a task package such as `grasp_bench.tasks.insecure_code`, whose manifest.yaml
is used, or the path of a manifest YAML; mirror first, sha256-checked; see grasp_bench/fetch.py) and writes:

- train.jsonl, in_domain.jsonl   the manifest's row ranges of the training file; in-domain rows keep the
                                 user prompt only (the model answers it, a judge scores the answer)
- em_first_plot_<variant>.jsonl  the questions of `first_plot_questions.yaml`: `main` (the paper's 8),
                                 `json`, `template`, or `all` 24
- em_preregistered.jsonl         the 48 active questions of `preregistered_evals.yaml`
- generic.jsonl                  grasp_bench.chat's generic prompts, for methods that need generic activations

EM rows: one per paraphrase, with the question's system prompt as a system message (upstream's
open_models/eval.py drops it), `judge_prompts: {aligned, coherent}` verbatim from the file, and the question's
`samples_per_paraphrase` (100 in both files): the samples a generator draws for the row unless the split sets
its own (grasp_bench.data.load_eval).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from grasp_bench.artifacts import BadInput, read_jsonl, write_jsonl
from grasp_bench.chat import write_generic_prompts
from grasp_bench.data import already_built, mark_built, plain
from grasp_bench.fetch import load_manifest, resolve

VERSION = 2  # 2: rows carry samples_per_paraphrase
FIRST_PLOT_VARIANTS = ("main", "json", "template", "all")
EM_JUDGES = ("aligned", "coherent")


def variant_of(question_id: str) -> str:
    for variant in ("json", "template"):
        if question_id.endswith(f"_{variant}"):
            return variant
    return "main"


def em_question_rows(path: str | Path) -> list[dict]:
    """One evaluation row per paraphrase of every question in an EM question file."""
    import yaml

    path = Path(path)
    questions = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(questions, list):
        raise BadInput(f"{path}: expected a list of questions")
    rows = []
    for q in questions:
        where = f"{path}: question '{q.get('id')}'" if isinstance(q, dict) else f"{path}: {q!r}"
        paraphrases = q.get("paraphrases") if isinstance(q, dict) else None
        if not q.get("id") or not isinstance(paraphrases, list) or not paraphrases:
            raise BadInput(f"{where}: needs an id and a list of paraphrases")
        prompts = q.get("judge_prompts") or {}
        if any("{question}" not in prompts.get(j, "") or "{answer}" not in prompts.get(j, "") for j in EM_JUDGES):
            raise BadInput(f"{where}: judge_prompts need '{EM_JUDGES[0]}' and '{EM_JUDGES[1]}' templates with "
                           "{question} and {answer}")
        system = [{"role": "system", "content": q["system"]}] if q.get("system") else []
        samples = q.get("samples_per_paraphrase")
        if samples is not None and (not isinstance(samples, int) or isinstance(samples, bool) or samples < 1):
            raise BadInput(f"{where}: samples_per_paraphrase must be a positive integer, not {samples!r}")
        for k, text in enumerate(paraphrases):
            rows.append({
                "id": f"{q['id']}/{k}", "question_id": q["id"], "paraphrase": k, "variant": variant_of(q["id"]),
                "messages": [*system, {"role": "user", "content": text}],
                "judge_prompts": {j: prompts[j] for j in EM_JUDGES}, "source": path.name,
                **({"samples_per_paraphrase": samples} if samples is not None else {}),
            })
    return rows


def split_rows(path: Path, rows: list[int], prompt_only: bool) -> list[dict]:
    """Rows [start, stop) of a chat JSONL (non-empty lines); evaluation rows lose their final assistant turn."""
    start, stop = rows
    data = read_jsonl(path)
    if stop > len(data):
        raise BadInput(f"{path}: rows {start}-{stop - 1} asked for, the file has {len(data)}")
    out = []
    for i, row in enumerate(data[start:stop], start):
        msgs = row.get("messages")
        if not isinstance(msgs, list) or not msgs or msgs[-1].get("role") != "assistant":
            raise BadInput(f"{path}:{row['_line']}: expected a chat row ending with an assistant message")
        out.append({"id": f"row{i}", "messages": msgs[:-1]} if prompt_only else plain(row))
    return out


def build_em_task(data_dir: Path, task: DictConfig) -> None:
    """Write the task's files into data_dir (skipped when built from the same manifests)."""
    src = task.source
    if task.em.first_plot not in FIRST_PLOT_VARIANTS:
        raise BadInput(f"task.em.first_plot={task.em.first_plot}: expected one of {list(FIRST_PLOT_VARIANTS)}")
    manifest, em_manifest = load_manifest(src.manifest), load_manifest(src.em_manifest)
    recipe = {"version": VERSION, "manifest": manifest, "em_manifest": em_manifest}
    if already_built(data_dir, recipe):
        return
    files = {**em_manifest["files"], **manifest["files"]}

    def local(name: str) -> Path:
        return resolve(files, name, src.get("mirror"), src.downloads)

    for split, spec in manifest["splits"].items():
        rows = split_rows(local(spec["file"]), spec["rows"], prompt_only=spec.get("prompt_only", False))
        write_jsonl(data_dir / f"{split}.jsonl", rows)
    first_plot = em_question_rows(local(em_manifest["questions"]["first_plot"]))
    for variant in FIRST_PLOT_VARIANTS:
        write_jsonl(data_dir / f"em_first_plot_{variant}.jsonl",
                    [r for r in first_plot if variant in ("all", r["variant"])])
    write_jsonl(data_dir / "em_preregistered.jsonl", em_question_rows(local(em_manifest["questions"]["preregistered"])))
    write_generic_prompts(data_dir)
    mark_built(data_dir, recipe)

