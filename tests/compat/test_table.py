"""The committed compatibility table (docs/compatibility.md and README.md) is the one this session's cells give.

Runs last (``conftest.py``), over the results the matrix's cells recorded in this session; skipped when the session
ran only part of the matrix (``-k``, ``-m``, node ids).
"""

import pytest

from . import matrix


@pytest.mark.compat_table
def test_committed_table_equals_the_results(request):
    results = request.config.compat_results
    collected = request.config.compat_cells
    if request.config.compat_partial or len(results) < collected or collected == 0:
        pytest.skip("the whole matrix did not run in this session")
    table = matrix.render(results)
    assert matrix.committed_table() == table, "run `python -m tests.compat.matrix --write` and commit the table"
    assert matrix.PAGE.read_text() == matrix.page(table)
    assert matrix.readme_table() == table, "README's table differs: run `python -m tests.compat.matrix --write`"


def test_render_says_what_each_outcome_is():
    results = [
        {"row": "bert", "callback": "CurvatureMonitor", "status": "ok", "detail": ""},
        {"row": "gan", "callback": "CurvatureMonitor", "status": "refused", "detail": "CurvatureMonitor: no loss"},
        {"row": "gan", "callback": "LossLandscapeProbe", "status": "refused", "detail": "CurvatureMonitor: no loss"},
        {"row": "bert", "callback": "ConvArithmeticSummary", "status": "refused", "detail": "warns nothing to trace"},
        {"row": "boring", "callback": "CyclicalLR", "status": "xfail", "detail": "needs schedfix: today x"},
        {"row": "boring", "callback": "SuperConvergence", "status": "failed", "detail": "AssertionError: 1 != 2"},
    ]
    table = matrix.render(results)
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in table.splitlines() if line.startswith("| ")}
    cols = {c: i for i, c in enumerate(matrix.CALLBACKS)}
    bert, gan, boring = rows[matrix.ROWS["bert"]], rows[matrix.ROWS["gan"]], rows[matrix.ROWS["boring"]]
    assert bert[cols["CurvatureMonitor"]] == "✅" and bert[cols["LRRangeFinder"]] == "–"
    # notes numbered row by row, one note for one message however many cells give it
    assert boring[cols["CyclicalLR"]] == "❌ [1]" and boring[cols["SuperConvergence"]] == "❌ [2]"
    assert bert[cols["ConvArithmeticSummary"]] == "⚠️ warns [3]"
    assert gan[cols["CurvatureMonitor"]] == gan[cols["LossLandscapeProbe"]] == "refused [4]"
    assert "\n1. needs schedfix: today x (the fix is not on main yet)\n" in table
    assert "\n2. failed: AssertionError: 1 != 2\n" in table and "\n4. CurvatureMonitor: no loss" in table
