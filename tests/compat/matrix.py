"""The compatibility table, generated from the matrix's results (never typed by hand).

    python -m tests.compat.matrix --write              # run tests/compat, write docs/compatibility.md
    python -m tests.compat.matrix --results r.json     # print the table of a saved run
    python -m tests.compat.matrix --check              # exit 1 when the committed table differs from a fresh run

A run of ``pytest tests/compat`` with ``LIGHTNING_PAPERS_COMPAT_JSON=path`` saves the results (``conftest.py``);
``tests/compat/test_table.py`` compares the committed table with the results of the session it runs in.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "compatibility.md"  # the site's page; README links to it

CALLBACKS = ["LRRangeFinder", "CyclicalLR", "SuperConvergence", "LossLandscapeProbe", "CurvatureMonitor",
             "ConvArithmeticSummary", "TensorBoardLayout"]
ROWS = {
    "boring": "Lightning `BoringModel` (own `StepLR`)",
    "encoder_lm": "`nn.TransformerEncoder` LM (sdpa)",
    "demo_transformer": "Lightning demo `Transformer`",
    "resnet18": "torchvision `resnet18`, own scheduler dict",
    "replace": "the same with `replace_schedulers=True`",
    "bert": "HF `BertForSequenceClassification` (sdpa)",
    "gan": "two-optimizer GAN (manual)",
    "manual": "manual optimization",
    "accumulate": "`accumulate_grad_batches=2`",
    "clip": "`gradient_clip_val`",
    "bf16": "`precision=\"bf16-mixed\"`",
    "resume": "checkpoint + `ckpt_path` resume",
    "ddp": "DDP, 2 processes (gloo, CPU)",
}


def run(extra_args: list[str] | None = None) -> list[dict]:
    """Run ``pytest tests/compat`` (one torch thread) and return its cell results."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "results.json")
        env = {**os.environ, "LIGHTNING_PAPERS_COMPAT_JSON": path, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "compat"),
               "-m", "not compat_table", *(extra_args or [])]
        subprocess.run(cmd, cwd=REPO, env=env, check=False)
        with open(path) as f:
            return json.load(f)


def render(results: list[dict]) -> str:
    """The Markdown table (rows: models and Trainer options; columns: callbacks) and its numbered notes."""
    cells = {(r["row"], r["callback"]): r for r in results}
    notes: list[str] = []

    def note(text: str) -> int:
        if text not in notes:
            notes.append(text)
        return notes.index(text) + 1

    lines = ["| | " + " | ".join(f"`{c}`" for c in CALLBACKS) + " |", "|---" * (len(CALLBACKS) + 1) + "|"]
    for row, label in ROWS.items():
        out = []
        for callback in CALLBACKS:
            cell = cells.get((row, callback))
            if cell is None:
                out.append("–")
            elif cell["status"] == "ok":
                out.append("✅")
            elif cell["status"] == "refused":
                detail = cell["detail"]
                if detail.startswith("warns "):
                    out.append(f"⚠️ warns [{note(detail[len('warns '):] + ' (training goes on)')}]")
                else:
                    out.append(f"refused [{note(detail)}]")
            elif cell["status"] == "xfail":
                out.append(f"❌ [{note(cell['detail'] + ' (the fix is not on main yet)')}]")
            else:  # failed, or an xfail that passes (the mark must go)
                out.append(f"❌ [{note(cell['status'] + ': ' + cell['detail'])}]")
        lines.append(f"| {label} | " + " | ".join(out) + " |")
    table = "\n".join(lines)
    listed = "\n".join(f"{i}. {text}" for i, text in enumerate(notes, 1))
    legend = ("✅ the cell's value equals its reference; refused: stops at fit start, before the first training "
              "step, with the message below; ⚠️: a warning, training goes on; ❌: wrong, with the reason; –: not "
              "in the matrix.")
    return f"{table}\n\n{legend}\n\n{listed}\n" if notes else f"{table}\n\n{legend}\n"


def page(table: str) -> str:
    return ("# Compatibility\n\n"
            "Every callback on the models people train today, and on the Trainer options that change what a step is. "
            "Each cell of `tests/compat/` asserts a value against an independent reference: the probe's centre "
            "equals the module's own loss on those batches; the curvature equals a float64 finite-difference "
            "Rayleigh quotient along the reported eigenvector (eager attention for Hugging Face); the learning "
            "rates equal torch's `OneCycleLR` / `CyclicLR`; the range test sweeps its documented lrs, starts from the "
            "module's own loss and leaves the weights bit-identical; a refusal comes before the first training "
            "step. The table is generated from the results (`python -m tests.compat.matrix --write`), and a test "
            "checks the committed one.\n\n" + table + "\n## Versions\n\n"
            "Python ≥ 3.10, torch ≥ 2.4 (tested up to 2.14.1), lightning ≥ 2.5 (CI runs the callback and "
            "command-line tests on the oldest declared lightning too).\n")


def committed_table() -> str:
    """The table on the committed page: the page less the text that ``page`` puts around any table."""
    before, after = page("\0").split("\0")
    text = PAGE.read_text()
    return text.removeprefix(before).removesuffix(after) if text.startswith(before) and text.endswith(after) else ""


def write(table: str) -> None:
    PAGE.write_text(page(table))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", help="a results JSON of a run (LIGHTNING_PAPERS_COMPAT_JSON) instead of running")
    parser.add_argument("--write", action="store_true", help="write docs/compatibility.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed table differs")
    args = parser.parse_args(argv)
    if args.results:
        with open(args.results) as f:
            results = json.load(f)
    else:
        results = run()
    table = render(results)
    if args.write:
        write(table)
    if args.check and (committed_table() != table or PAGE.read_text() != page(table)):
        sys.stderr.write("the committed compatibility table differs from the results: "
                         "run python -m tests.compat.matrix --write\n")
        return 1
    if not args.write:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
