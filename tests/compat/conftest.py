"""Records each matrix cell's outcome (for ``tests/compat/matrix.py``) and runs the table check last."""

from __future__ import annotations

import json
import os

import pytest

RESULTS: list[dict] = []


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The matrix's budget is measured with one torch thread (the DDP script sets its own)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_configure(config):
    config.addinivalue_line("markers", "compat_cell(callback): a cell of the compatibility matrix")
    config.addinivalue_line("markers", "compat_table: the check of the committed table (runs last)")
    config.compat_results = RESULTS
    config.compat_cells = 0
    # a session that selects part of the matrix cannot check the whole table
    config.compat_partial = bool(config.option.keyword or config.option.markexpr
                                 or any("::" in str(a) for a in config.args))


def pytest_collection_modifyitems(config, items):
    last = [i for i in items if i.get_closest_marker("compat_table")]
    items[:] = [i for i in items if i not in last] + last


def pytest_collection_finish(session):
    session.config.compat_cells = sum(1 for i in session.items if i.get_closest_marker("compat_cell"))


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0][:300] if lines else ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("compat_cell")
    if marker is None or not hasattr(item, "callspec"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        refused = dict(item.user_properties).get("refused")
        if hasattr(report, "wasxfail"):
            status, detail = ("xfail", report.wasxfail) if report.outcome == "skipped" else ("xpass", report.wasxfail)
        elif report.outcome == "passed":
            status, detail = ("refused", refused) if refused else ("ok", "")
        else:
            status, detail = "failed", _one_line(call.excinfo.value if call.excinfo else report.longrepr)
        RESULTS.append({"callback": marker.args[0], "row": item.callspec.params["row"], "status": status,
                        "detail": detail, "test": item.nodeid})


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("LIGHTNING_PAPERS_COMPAT_JSON")
    if path and RESULTS:
        with open(path, "w") as f:
            json.dump(RESULTS, f, indent=1)
