import os

import pytest

# Keep the two cores for the tests themselves: torch intra-op threads fight the DDP test processes.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path, monkeypatch):
    """Every test runs in its own empty working directory, so nothing it writes lands in the checkout."""
    monkeypatch.chdir(tmp_path)
