import os
import subprocess
import sys
from pathlib import Path

import pytest

# Keep the two cores for the tests themselves: torch intra-op threads fight the DDP test processes.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path, monkeypatch):
    """Every test runs in its own empty working directory, so nothing it writes lands in the checkout."""
    monkeypatch.chdir(tmp_path)


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_script(tmp_path):
    """Write ``source`` to a script in ``tmp_path`` and run it there with ``tmp_path`` as its argument.

    For multi-process (DDP, gloo) tests: each test's script launches its own Trainer with ``devices=2``
    in a fresh interpreter that imports this checkout. Fails the test with the script's stderr.

    A DDP script must end with ``torch.distributed.destroy_process_group()`` (checked here): Lightning destroys
    the group at exit only for NCCL, and a gloo worker thread that frees its last finished collective while the
    interpreter finalizes needs the GIL there and aborts the rank ("terminate called without an active
    exception", exit -6; the stack: ``ProcessGroupGloo::runLoop`` -> ``~AsyncWork`` -> ``~ThreadLocalState`` ->
    a Python decref -> ``take_gil`` -> ``pthread_exit`` in a noexcept destructor).
    """

    def run(source: str, name: str = "script.py", timeout: float = 110.0) -> subprocess.CompletedProcess:
        if "strategy=" in source and "destroy_process_group()" not in source:
            raise AssertionError("a DDP test script must end with torch.distributed.destroy_process_group()")
        script = tmp_path / name
        script.write_text(source)
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True,
                              text=True, timeout=timeout, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    return run


@pytest.fixture(scope="session")
def demo_fast_run(tmp_path_factory):
    """``lightning-papers demo --fast`` on the CPU, run once per session: (run folder, printed summary).

    Shared by the CLI test and the TensorBoard server test, so the suite pays for one demo run.
    """
    import contextlib
    import io

    from lightning_papers.cli import main

    out_dir = tmp_path_factory.mktemp("demo")
    stdout = io.StringIO()
    cwd = os.getcwd()
    os.chdir(out_dir.parent)  # like every test, nothing may land in the checkout
    try:
        with contextlib.redirect_stdout(stdout):
            assert main(["demo", "--fast", "--out", str(out_dir), "--device", "cpu"]) == 0
    finally:
        os.chdir(cwd)
    runs = list(out_dir.iterdir())
    assert len(runs) == 1, runs
    return runs[0], stdout.getvalue()
