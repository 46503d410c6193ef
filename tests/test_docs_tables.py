"""python -m grasp_bench.docs_tables: results files taken from a synthetic runs root, the doc's blocks generated from
them (the report's own tables), prose outside the blocks kept, --check, and bad input."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from grasp_bench.docs_tables import main
from grasp_bench.report import aggregate
from grasp_bench.verdict import PROMPTS
from tests.test_verdict import synthetic_root

DOC = """# Measured results

Prose that stays.

<!-- results:toy begin -->
an old, retyped table
<!-- results:toy end -->

More prose.

<!-- results:across begin -->
<!-- results:across end -->
"""


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """A runs root with two organisms, reported, and its results files taken into a results folder."""
    root = tmp_path_factory.mktemp("reported")
    runs, results = root / "runs", root / "results"
    synthetic_root(runs, seeds=(0, 1), task="toy", n_task=60, n_spur=60)
    synthetic_root(runs, seeds=(0,), task="other", n_task=60, n_spur=60)
    aggregate(runs, quiet=True)
    doc = root / "RESULTS.md"
    doc.write_text(DOC)
    main(["--take", str(runs), "--results", str(results), "--doc", str(doc)])
    return runs, results, doc.read_text()


@pytest.fixture
def committed(reported, tmp_path):
    """...and a doc whose blocks were generated from them, both copied for one test to change."""
    runs, results, text = reported
    doc = tmp_path / "RESULTS.md"
    doc.write_text(text)
    return runs, shutil.copytree(results, tmp_path / "results"), doc


def test_results_are_taken_per_organism(committed):
    runs, results, _ = committed
    assert sorted(p.name for p in results.iterdir()) == ["other", "toy"]
    toy = pd.read_csv(results / "toy" / "results.csv")
    assert set(toy["task"]) == {"toy"} and len(toy) == len(pd.read_csv(runs / "results.csv").query("task == 'toy'"))
    data = json.loads((results / "toy" / "verdict.json").read_text())
    assert {r["task"] for r in data["verdict"]} == {"toy"} and data["settings"]["reported_on"] == "test"


def test_blocks_hold_the_reports_tables_and_prose_stays(committed):
    runs, _, doc = committed
    text = doc.read_text()
    assert text.startswith("# Measured results\n\nProse that stays.\n") and "\nMore prose.\n" in text
    assert "an old, retyped table" not in text
    toy_block = text.split("<!-- results:toy begin -->")[1].split("<!-- results:toy end -->")[0]
    report = (runs / "results.md").read_text()
    toy_section = report[report.index("### toy / m"):]
    assert toy_section.strip() in toy_block  # the same tables as grasp-bench-report's, from the committed files
    assert "### Across tasks: m (judge: rule)" in text.split("<!-- results:across begin -->")[1]
    # the second organism had no block: it gets one at the end
    assert text.rstrip().endswith("<!-- results:other end -->") and "## Results: other (generated)" in text


def test_a_second_run_changes_nothing_and_check_passes(committed, capsys):
    _, results, doc = committed
    before = doc.read_text()
    main(["--results", str(results), "--doc", str(doc)])
    assert doc.read_text() == before and "up to date" in capsys.readouterr().out
    main(["--results", str(results), "--doc", str(doc), "--check"])  # returns: no SystemExit


def test_check_fails_when_a_table_was_retyped(committed):
    _, results, doc = committed
    doc.write_text(doc.read_text().replace("| grasp | grasp | ", "| grasp | grasp | 0.000 retyped ", 1))
    with pytest.raises(SystemExit) as e:
        main(["--results", str(results), "--doc", str(doc), "--check"])
    assert e.value.code == 1


def test_a_block_without_results_files_is_one_line_and_exit_2(committed, capsys):
    _, results, doc = committed
    doc.write_text(doc.read_text() + "\n<!-- results:gone begin -->\n<!-- results:gone end -->\n")
    with pytest.raises(SystemExit) as e:
        main(["--results", str(results), "--doc", str(doc)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "results block 'gone'" in err


def test_damaged_results_files_are_one_line_and_exit_2(committed, capsys):
    _, results, doc = committed
    csv, pfile = results / "toy" / "results.csv", results / "toy" / PROMPTS
    for path, damage, said in ((csv, lambda: csv.write_text(pd.read_csv(csv).drop(columns="seed").to_csv(index=False)),
                                "no 'seed' column"),
                               (pfile, lambda: pfile.write_bytes(b"not gzip"), "not a prompts file")):
        kept = path.read_bytes()
        damage()
        with pytest.raises(SystemExit) as e:
            main(["--results", str(results), "--doc", str(doc)])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and err.startswith(f"error: {path}: {said}"), err
        path.write_bytes(kept)


def test_a_second_doc_gets_its_own_blocks_only(committed, tmp_path):
    """README.md holds the side-by-side verdict only: organisms without a block are added to the first doc alone."""
    _, results, doc = committed
    readme = tmp_path / "README.md"
    readme.write_text("# Project\n\n<!-- results:across begin -->\n<!-- results:across end -->\n\nUsage.\n")
    main(["--results", str(results), "--doc", str(doc), "--doc", str(readme)])
    text = readme.read_text()

    def across(t):
        return t.split("<!-- results:across begin -->")[1].split("<!-- results:across end -->")[0]

    assert "### Across tasks" in across(text) and across(text) == across(doc.read_text())
    assert "results:toy" not in text and "## Results:" not in text and text.endswith("\n\nUsage.\n")
    main(["--results", str(results), "--doc", str(doc), "--doc", str(readme), "--check"])
    readme.write_text(text.replace("| grasp |", "| grasp | retyped", 1))
    with pytest.raises(SystemExit) as e:
        main(["--results", str(results), "--doc", str(doc), "--doc", str(readme), "--check"])
    assert e.value.code == 1


def test_the_committed_docs_are_generated_from_the_committed_results():
    """docs/RESULTS.md's and README.md's blocks are what docs/results/ makes: a retyped or stale table fails here."""
    from grasp_bench.layout import CONF_DIR

    repo = CONF_DIR.parent
    if not (repo / "docs" / "RESULTS.md").is_file():
        pytest.skip("an installed package without the repository's docs")
    main(["--results", str(repo / "docs" / "results"), "--doc", str(repo / "docs" / "RESULTS.md"),
          "--doc", str(repo / "README.md"), "--check"])


# --- merging sessions, and the verdict recomputed from the committed sums -------------------------------------

def test_take_merges_runs_and_recomputes_the_verdict(tmp_path, capsys):
    """Session one ran seeds 0 and 1, session two seed 1 again (other replies) and seed 2: the merged folder keeps
    session one's seed 0, takes session two's seeds 1 and 2, and holds what one runs root with those runs gives."""
    one = synthetic_root(tmp_path / "one", seeds=(0, 1), n_task=60, n_spur=60, kind="style")
    two = synthetic_root(tmp_path / "two", seeds=(1, 2), n_task=60, n_spur=60, kind="style")
    both = tmp_path / "both"
    shutil.copytree(one, both)
    shutil.copytree(two, both, dirs_exist_ok=True)  # seed 1's run directories replaced by session two's
    for root in (one, two, both):
        aggregate(root, quiet=True)
    results, doc = tmp_path / "results", tmp_path / "RESULTS.md"
    doc.write_text(DOC)
    main(["--take", str(one), "--results", str(results), "--doc", str(doc)])
    main(["--take", str(two), "--results", str(results), "--doc", str(doc)])
    out = capsys.readouterr().out
    folder = results / "toy"
    seed_1 = [pd.read_csv(r / "results.csv").query("seed == 1")["eval/spurious_rate"].tolist() for r in (one, two)]
    assert seed_1[0] != seed_1[1]  # the two sessions' seed-1 runs replied differently
    assert (folder / PROMPTS).read_bytes() == (both / PROMPTS).read_bytes()
    pd.testing.assert_frame_equal(pd.read_csv(folder / "results.csv"), pd.read_csv(both / "results.csv"))
    merged, whole = (json.loads((p / "verdict.json").read_text()) for p in (folder, both))
    assert merged == {**whole, "roles": {"toy": "test"}, "kinds": {"toy": "style"}}
    assert sorted(set(pd.read_csv(folder / "results.csv")["seed"])) == [0, 1, 2]
    assert "next: grasp-bench sweep=tradeoff task=toy model=m judge=rule method=sft seed=3,4" in out
    main(["--results", str(results), "--doc", str(doc), "--check"])  # the recomputed verdict is the committed one


def test_other_verdict_settings_or_an_older_report_are_refused(committed, tmp_path, capsys):
    runs, results, doc = committed
    vjson = results / "toy" / "verdict.json"
    data = json.loads(vjson.read_text())
    vjson.write_text(json.dumps({**data, "settings": {**data["settings"], "task_cost": 0.05}}))
    with pytest.raises(SystemExit) as e:
        main(["--take", str(runs), "--results", str(results), "--doc", str(doc)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "verdict settings" in err and str(vjson) in err
    older = tmp_path / "older"
    shutil.copytree(runs, older)
    (older / PROMPTS).unlink()
    with pytest.raises(SystemExit) as e:
        main(["--take", str(older), "--results", str(results), "--doc", str(doc)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and f"run grasp-bench-report {older} first" in err


def test_check_catches_an_edited_verdict_and_a_rerun_recomputes_it(committed, capsys):
    _, results, doc = committed
    vjson = results / "toy" / "verdict.json"
    taken = vjson.read_text()
    data = json.loads(taken)
    data["verdict"][0]["headline"] -= 0.1
    vjson.write_text(json.dumps(data))
    with pytest.raises(SystemExit) as e:
        main(["--results", str(results), "--doc", str(doc), "--check"])
    err = capsys.readouterr().err.strip().splitlines()  # one line per file: the verdict, and the block made from it
    assert e.value.code == 1 and len(err) == 2 and err[0].startswith(f"{vjson}: differs from the verdict recomputed")
    assert err[1].startswith(f"{doc}: its generated tables differ")
    main(["--results", str(results), "--doc", str(doc)])
    assert vjson.read_text() == taken  # recomputed from prompts.csv.gz: the bootstrap is seeded, so the same
    main(["--results", str(results), "--doc", str(doc), "--check"])


def test_a_folder_taken_before_prompts_files_keeps_its_verdict_and_says_so(committed):
    _, results, doc = committed
    (results / "toy" / PROMPTS).unlink()
    vjson = results / "toy" / "verdict.json"
    data = json.loads(vjson.read_text())
    data["verdict"][0]["headline"] -= 0.1  # not recomputed: nothing to recompute it from
    vjson.write_text(json.dumps(data))
    main(["--results", str(results), "--doc", str(doc)])
    block = doc.read_text().split("<!-- results:toy begin -->")[1]
    assert "Verdict as taken before per-prompt sums were committed (no prompts.csv.gz)" in block
    assert json.loads(vjson.read_text()) == data
    main(["--results", str(results), "--doc", str(doc), "--check"])
