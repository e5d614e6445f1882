"""The verdicts in ``benchmarks/results/*.json`` follow from the written rule (``_fidelity.verdict``, issue 25).

Every comparison a fidelity script writes as a paired block (``_fidelity.paired_block``: per-seed ``diffs``, the
paper's ``direction`` and a ``verdict``) is re-derived here from its per-seed values, and a claim's
``paired_verdict`` from its parts (``combined_verdict``), so a stored verdict cannot drift from its numbers.
Results written by the earlier method (means and standard deviations, no per-seed pairs) carry no paired block
and are listed by :func:`test_results_without_pairs_are_known`: their README verdicts await a rerun.

Each row of the "Does it reproduce?" table (``docs/reproduce.md``) and each verdict line of ``benchmarks/README.md``
("Verdict (claim): **word**") is then checked against the verdict re-derived from its JSON (:data:`ROWS`), so the
documents cannot drift from the numbers either."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

import _fidelity as fid  # noqa: E402

RESULTS = sorted((ROOT / "benchmarks" / "results").glob("fidelity_*.json"))
# the results still from the method before issue 25 (no per-seed pairs): rerun them, then remove them here
OLD_METHOD: set[str] = set()
VERDICT_WORDS = ("shown", "contradicted", "inconclusive")
# (the claim as benchmarks/README.md names it in "Verdict (claim): **word**", a phrase of the first cell of its row
#  in docs/reproduce.md, its parts: (JSON file, path to the node with "paired" and "paired_verdict")). A row of
#  several parts (CLR: the 240-step budget and the 480-step check that its target was the fixed policy's best) takes
#  the rule's word for a claim of several parts (combined_verdict: shown when every part is).
ROWS = (
    ("super-convergence", "Super-convergence", (("fidelity_superconvergence.json", ()),)),
    ("LR range test", "LR range test", (("fidelity_lr_range.json", ()),)),
    ("CLR", "CLR (Smith", (("fidelity_clr.json", ()), ("fidelity_clr_480steps.json", ()))),
    ("skip connections", "skip connections flatten",
     (("fidelity_landscape.json", ("verdicts", "skip connections flatten")),)),
    ("width", "width flattens", (("fidelity_landscape.json", ("verdicts", "width flattens")),)),
    ("batch size", "small batches flatten", (("fidelity_landscape.json", ("verdicts", "small batches flatten")),)),
)


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


def _claim_verdict(record: dict, path: tuple[str, ...]) -> str | None:
    """The claim's verdict re-derived from its per-seed values (``None`` when the record has no such claim)."""
    node = record
    for key in path:
        node = node.get(key, {})
    if "paired_verdict" not in node:
        return None
    derived = [d for where, _, d in rederive(node) if where == "/paired_verdict"]
    return derived[0]


def _table_verdicts(text: str) -> dict[str, str]:
    """{first cell: the bold verdict word of the "verdict" column} for the "Does it reproduce?" table."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    col = header.index("verdict")
    out = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        match = re.match(r"\*\*(\w[\w ]*)\*\*", cells[col])
        out[cells[0]] = match.group(1) if match else cells[col]
    return out


def _rows_with_records():
    for claim, phrase, parts in ROWS:
        derived = [_claim_verdict(_records(ROOT / "benchmarks" / "results" / name)[-1], path) for name, path in parts]
        names = [name for name, _ in parts]
        yield claim, phrase, names, None if None in derived else fid.combined_verdict(derived)


@pytest.mark.parametrize(("claim", "phrase", "names", "derived"), list(_rows_with_records()),
                         ids=[row[0] for row in ROWS])
def test_documents_carry_the_derived_verdict(claim, phrase, names, derived):
    if derived is None:
        assert set(names) <= OLD_METHOD, f"{names} lack the claim {claim!r}: rerun them or fix ROWS"
        pytest.skip(f"{names}: from the method before issue 25; the row is checked once it is rerun")
    table = _table_verdicts((ROOT / "docs" / "reproduce.md").read_text())
    cells = [cell for cell in table if phrase in cell]
    assert len(cells) == 1, f"docs/reproduce.md: expected one table row naming {phrase!r}, found {len(cells)}"
    assert table[cells[0]] == derived, f"docs/reproduce.md, {claim}: **{table[cells[0]]}**, the JSON gives {derived}"
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    words = re.findall(rf"Verdict \({re.escape(claim)}\): \*\*(\w+)\*\*", readme)
    assert words == [derived], f"benchmarks/README.md: 'Verdict ({claim}): **...**' says {words}, the JSON {derived}"


def test_every_table_row_is_checked():
    """A row added to the table without an entry in ROWS would escape the check; the verdicts use the rule's words."""
    table = _table_verdicts((ROOT / "docs" / "reproduce.md").read_text())
    for cell, word in table.items():
        named = sum(phrase in cell for _, phrase, _ in ROWS)
        assert named == 1, f"docs/reproduce.md row {cell[:60]!r} is named by {named} entries of ROWS: expected one"
        parts = next(parts for _, phrase, parts in ROWS if phrase in cell)
        if not {name for name, _ in parts} <= OLD_METHOD:
            assert word in VERDICT_WORDS, f"{cell[:60]!r}: verdict {word!r} is not one of the rule's {VERDICT_WORDS}"


def test_table_reader_can_fail():
    text = "| claim | verdict |\n|---|---|\n| CLR (Smith, x) | **shown** (n = 5) |\n| other | none |\n"
    assert _table_verdicts(text) == {"CLR (Smith, x)": "shown", "other": "none"}
    assert _claim_verdict({"paired": {"a": fid.paired_block([1.0, 1.1, 0.9], [0.0, 0.1, 0.0], "greater")},
                           "paired_verdict": "inconclusive"}, ()) == "shown"


def test_rederive_applies_a_non_inferiority_margin():
    """A block with ``margin`` m is judged on ``diffs + m``: 0.3 points worse is "equal" within 0.5, not within 0."""
    diffs = [-0.003, -0.0028, -0.0032, -0.0029, -0.0031]
    block = {"diffs": diffs, "direction": "greater", "margin": 0.005, "verdict": "shown"}
    record = {"paired": {"fewer iterations": block}, "paired_verdict": "shown"}
    assert all(stored == derived for _, stored, derived in rederive(record))
    no_margin = {k: v for k, v in block.items() if k != "margin"}
    assert _rule(no_margin) == "contradicted" == fid.verdict(diffs, "greater")
