"""python -m grasp_bench.docs_tables: results files taken from a synthetic runs root, the doc's blocks generated from
them (the report's own tables), prose outside the blocks kept, --check, and bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from grasp_bench.docs_tables import main
from grasp_bench.report import aggregate
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
    """...and a doc whose blocks were generated from them, for one test to change."""
    runs, results, text = reported
    doc = tmp_path / "RESULTS.md"
    doc.write_text(text)
    return runs, results, doc


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


def test_the_committed_doc_is_generated_from_the_committed_results():
    """docs/RESULTS.md's blocks are what docs/results/ makes: a retyped or stale table fails here."""
    from grasp_bench.layout import CONF_DIR

    repo = CONF_DIR.parent
    if not (repo / "docs" / "RESULTS.md").is_file():
        pytest.skip("an installed package without the repository's docs")
    main(["--results", str(repo / "docs" / "results"), "--doc", str(repo / "docs" / "RESULTS.md"), "--check"])
