"""The verdicts in ``benchmarks/results/*.json`` follow from the written rule (``_fidelity.verdict``, issue 25).

Every comparison a fidelity script writes as a paired block (``_fidelity.paired_block``: per-seed ``diffs``, the
paper's ``direction`` and a ``verdict``) is re-derived here from its per-seed values, and a claim's
``paired_verdict`` from its parts (``combined_verdict``), so a stored verdict cannot drift from its numbers.
Results written by the earlier method (means and standard deviations, no per-seed pairs) carry no paired block
and are listed by :func:`test_results_without_pairs_are_known`: their README verdicts await a rerun."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

import _fidelity as fid  # noqa: E402

RESULTS = sorted((ROOT / "benchmarks" / "results").glob("fidelity_*.json"))
# the results still from the method before issue 25 (no per-seed pairs): rerun them, then remove them here
OLD_METHOD = {"fidelity_clr.json", "fidelity_landscape.json", "fidelity_lr_range.json"}


def _records(path: Path) -> list[dict]:
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def _paired_blocks(node, where: str = ""):
    """(where, block) for every paired block in a JSON tree, and (where, node) for nodes with a paired_verdict."""
    if isinstance(node, dict):
        if {"diffs", "direction", "verdict"} <= set(node):
            yield where, node
        for key, value in node.items():
            yield from _paired_blocks(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paired_blocks(value, f"{where}/{i}")


def _claims(node, where: str = ""):
    if isinstance(node, dict):
        if "paired_verdict" in node:
            yield where, node
        for key, value in node.items():
            yield from _claims(value, f"{where}/{key}")


def _rule(block: dict) -> str:
    """The written rule on one block; a block with a non-inferiority ``margin`` m ("equal accuracy") is judged on
    ``diffs + m`` (shown when the interval's lower end is above -m)."""
    margin = block.get("margin", 0.0)
    return fid.verdict([d + margin for d in block["diffs"]], block["direction"], block.get("level", 0.95))


def rederive(record: dict) -> list[tuple[str, str, str]]:
    """(where, stored verdict, re-derived verdict) for every paired block and claim in one JSON record."""
    out = [(where, block["verdict"], _rule(block)) for where, block in _paired_blocks(record)]
    for where, claim in _claims(record):
        parts = claim.get("paired", {})
        if "hessian_top_eigenvalue" in parts:  # Li et al.: the curvature measures decide, accuracy is reported
            parts = {k: parts[k] for k in ("hessian_top_eigenvalue", "loss_rise_r0.5")}
        derived = fid.combined_verdict([_rule(p) for p in parts.values()])
        out.append((f"{where}/paired_verdict", claim["paired_verdict"], derived))
    return out


@pytest.mark.parametrize("path", RESULTS, ids=[p.name for p in RESULTS])
def test_stored_verdicts_follow_the_rule(path):
    checked = [row for record in _records(path) for row in rederive(record)]
    if not checked:
        assert path.name in OLD_METHOD, f"{path.name} has no per-seed paired values: rerun it with the new method"
        pytest.skip(f"{path.name}: from the method before issue 25 (no per-seed pairs); rerun to check it")
    for where, stored, derived in checked:
        assert stored == derived, f"{path.name}{where}: stored {stored!r}, the rule gives {derived!r}"


def test_superconvergence_result_is_rerun():
    """The super-convergence JSON is from the issue-25 method: both halves of the claim and the arms as paired blocks
    (re-derived above), the claim's verdict from its halves, five seeds."""
    (record,) = _records(ROOT / "benchmarks" / "results" / "fidelity_superconvergence.json")
    assert record["n"] >= 5 and len(record["paired"]) == 2 and len(record["arms"]) == 4
    assert list(record["halves"].values()) == [_rule(b) for b in record["paired"].values()]
    assert record["verdict"] == record["paired_verdict"] == fid.combined_verdict(list(record["halves"].values()))


def test_results_without_pairs_are_known():
    """A result without pairs must be one of the old-method files named above, and a rerun file must leave it."""
    without = {p.name for p in RESULTS if not any(rederive(r) for r in _records(p))}
    assert without <= OLD_METHOD
    assert OLD_METHOD - {p.name for p in RESULTS} == set(), "OLD_METHOD names a file that is gone: remove it"


def test_rederive_catches_a_drifted_verdict():
    """The check can fail: a stored verdict that its numbers do not support is reported."""
    good = fid.paired_block([0.9, 0.95, 0.92, 0.91, 0.93], [0.8, 0.82, 0.85, 0.81, 0.83], "greater")
    assert good["verdict"] == "shown"
    record = {"paired": {"rival": dict(good, verdict="shown")}, "paired_verdict": "shown"}
    assert all(stored == derived for _, stored, derived in rederive(record))
    drifted = {"paired": {"rival": dict(good, verdict="contradicted")}, "paired_verdict": "inconclusive"}
    mismatches = [(s, d) for _, s, d in rederive(drifted) if s != d]
    assert mismatches == [("contradicted", "shown"), ("inconclusive", "shown")]


def test_rederive_applies_a_non_inferiority_margin():
    """A block with ``margin`` m is judged on ``diffs + m``: 0.3 points worse is "equal" within 0.5, not within 0."""
    diffs = [-0.003, -0.0028, -0.0032, -0.0029, -0.0031]
    block = {"diffs": diffs, "direction": "greater", "margin": 0.005, "verdict": "shown"}
    record = {"paired": {"fewer iterations": block}, "paired_verdict": "shown"}
    assert all(stored == derived for _, stored, derived in rederive(record))
    no_margin = {k: v for k, v in block.items() if k != "margin"}
    assert _rule(no_margin) == "contradicted" == fid.verdict(diffs, "greater")
