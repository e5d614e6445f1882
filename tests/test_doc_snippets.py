"""The Python snippets of the documentation pages (``docs/**/*.md``) and of README.md run as written, and every
picture they link exists.

Each ```python block is executed in a fresh namespace. To keep the suite short, ``lightning.Trainer`` is
replaced by a subclass that caps training at a few steps on one CPU process (the "Scaling out" snippet's
GPUs, nodes and precision become the CPU's), and ``LRRangeFinder`` sweeps at most 8
steps (a curve that short cannot be read, so ``CyclicalLR`` / ``SuperConvergence`` taking ``"finder"`` rates get a
``fallback_lr`` instead of refusing); the snippets' own imports, names and arguments are what is tested. The
landscape snippet uses ``model``, ``x`` and ``y`` from the text around it: the test provides a small CNN and 16
digits, and shrinks its 51 x 51 grid to 5 x 5.
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning
import pytest
import torch
from torch import nn

import lightning_papers.callbacks
from lightning_papers.callbacks import CyclicalLR, LRRangeFinder, SuperConvergence

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
# (where, code) for every ```python block, "docs/papers/clr.md block 1" style
BLOCKS = [(f"{page.relative_to(ROOT)} block {i + 1}", code) for page in PAGES
          for i, code in enumerate(re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M))]


class _ShortTrainer(lightning.Trainer):
    def __init__(self, *args, **kwargs):
        kwargs.update(max_steps=3, max_epochs=1, limit_train_batches=3, limit_val_batches=1, accelerator="cpu",
                      devices=1, num_nodes=1, strategy="auto", precision="32-true", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0)
        super().__init__(*args, **kwargs)


class _ShortFinder(LRRangeFinder):
    def __init__(self, *args, num_steps=100, **kwargs):
        super().__init__(*args, num_steps=min(num_steps, 8), save_results=False, **kwargs)


class _ShortCyclicalLR(CyclicalLR):
    def __init__(self, base_lr=None, max_lr=None, **kwargs):
        if "finder" in (base_lr, max_lr):
            kwargs.setdefault("fallback_lr", (0.01, 0.1))
        super().__init__(base_lr, max_lr, **kwargs)


class _ShortSuperConvergence(SuperConvergence):
    def __init__(self, max_lr, **kwargs):
        if max_lr == "finder":
            kwargs.setdefault("fallback_lr", 0.1)
        super().__init__(max_lr, **kwargs)


def test_the_pages_have_the_snippets_this_test_expects():
    assert len(BLOCKS) >= 10
    assert any("LRRangeFinder" in b for _, b in BLOCKS) and any("ls.surface" in b for _, b in BLOCKS)
    assert {where.split(" block")[0] for where, _ in BLOCKS} >= {"docs/papers/clr.md", "docs/papers/landscape.md",
                                                               "docs/scaling-out.md"}


# a page's blocks run in order in one namespace, as a reader runs them (a later block uses an earlier one's names)
SNIPPET_PAGES = sorted({where.split(" block")[0] for where, _ in BLOCKS})


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("page", SNIPPET_PAGES)
def test_snippets_run(page, monkeypatch, tmp_path):
    monkeypatch.setattr(lightning, "Trainer", _ShortTrainer)
    monkeypatch.setattr(lightning_papers.callbacks, "LRRangeFinder", _ShortFinder)
    monkeypatch.setattr(lightning_papers.callbacks, "CyclicalLR", _ShortCyclicalLR)
    monkeypatch.setattr(lightning_papers.callbacks, "SuperConvergence", _ShortSuperConvergence)
    torch.manual_seed(0)
    from lightning_papers.data import DigitsDataModule

    dm = DigitsDataModule(batch_size=16)
    dm.setup("fit")
    images, labels = dm.val_set.tensors
    namespace = {
        "__name__": "doc_snippet",
        "model": nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                               nn.Linear(4 * 8 * 8, 10)),
        "x": dm.transform(images[:16]),
        "y": labels[:16],
    }
    monkeypatch.chdir(tmp_path)  # what a snippet saves (contour.png, spectrum.png) lands here, not in the checkout
    for where, code in [(w, c) for w, c in BLOCKS if w.split(" block")[0] == page]:
        if "np.linspace(-1, 1, 51)" in code:  # the paper's 51 x 51 grid, shrunk to 5 x 5 to keep the suite short
            code = code.replace("np.linspace(-1, 1, 51)", "np.linspace(-1, 1, 5)")
        exec(compile(code, where, "exec"), namespace)  # noqa: S102
        if "fold_bn=True" in code:  # the fast surface is the plain one, to float rounding
            import numpy as np

            assert namespace["fast"].metadata["fold_bn"] == 1
            np.testing.assert_allclose(namespace["fast"]["loss"], namespace["res"]["loss"], rtol=1e-5)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_linked_picture_exists(page):
    text = page.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text) + re.findall(r'<img[^>]+src="([^"]+)"', text)
    files = [(page.parent / link).resolve() for link in links if not link.startswith("http")]
    missing = [str(f) for f in files if not f.is_file()]
    assert not missing, missing
    sizes = {str(f): f.stat().st_size for f in files}
    assert all(size < 300_000 for size in sizes.values()), sizes


def test_readme_shows_a_picture_per_paper():
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", README.read_text())
    assert len(set(links)) >= 7, links
