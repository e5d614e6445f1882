"""``benchmarks/landscape_adaptive.py --fast``: it runs, writes its picture and one JSON line whose numbers hang
together (budgets respected, errors finite and zero where every point is evaluated). The measured table comes from
running the script with its defaults, not from here."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_fast_run_prints_a_consistent_json_line(tmp_path, capsys):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    script = importlib.import_module("landscape_adaptive")
    summary = script.main(["--fast", "--grid", "9", "--out", str(tmp_path), "--budgets", "0.3", "1.0"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["grid"] == 9 and [r["model"] for r in line["rows"]] == [r["model"] for r in summary["rows"]]
    assert len(line["rows"]) == 3 and (tmp_path / "landscape_adaptive.png").is_file()
    for row in line["rows"]:
        part, whole = row["budgets"]["30%"], row["budgets"]["100%"]
        assert 9 <= part["points"] <= round(0.3 * 81) and part["points"] <= whole["points"] <= 81
        assert math.isfinite(part["mean_abs_error"]) and part["mean_abs_error"] <= part["max_abs_error"]
        if whole["points"] == 81:  # everything evaluated: the adaptive surface is the full one, point for point
            assert whole["max_abs_error"] == 0.0 and whole["basin_iou"] == 1.0 and whole["contour_iou"] == 1.0
        else:  # refinement stopped where every estimate is 0 (a clipped plateau): nothing there to learn
            assert whole["estimated_max_error"] == 0.0
