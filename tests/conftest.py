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

    def run(source: str, name: str = "script.py", timeout: float = 200.0) -> subprocess.CompletedProcess:
        if "strategy=" in source and "destroy_process_group()" not in source:
            raise AssertionError("a DDP test script must end with torch.distributed.destroy_process_group()")
        script = tmp_path / name
        script.write_text(source)
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        try:
            proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True,
                                  text=True, timeout=timeout, cwd=tmp_path)
        except subprocess.TimeoutExpired as err:  # say how far it got and how busy the machine was
            tail = (err.stderr or b"")[-3000:]
            tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
            load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
            raise AssertionError(f"{name} timed out after {timeout:.0f} s, {load}; its stderr ends:\n{tail}") from None
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


# Checkpoints of both perceptual-loss modules, made once per session by one-step Trainer runs (random VGG for style
# transfer, the pixel loss for super-resolution): shared by the image-command (tests/cli), model and export tests.
def _fit_and_save(module, root, name):
    import warnings

    import lightning as L
    import torch

    from lightning_papers.data import ImageFolderDataModule
    from lightning_papers.modules import SuperResolution

    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=root)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random.*")
        trainer.fit(module, datamodule=ImageFolderDataModule(image_size=32, batch_size=2))
    if isinstance(module, SuperResolution):
        # one step from the zero-initialised last layer barely moves it: give the network a visible correction,
        # so that a test dropping the network (bicubic only) or the bicubic would fail
        last = [m for m in module.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        with torch.no_grad():
            last.weight.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
    path = root / name
    trainer.save_checkpoint(path)
    return path, module.eval()


@pytest.fixture(scope="session")
def style_checkpoint(tmp_path_factory):
    """(path, module in eval mode) of a FastStyleTransfer checkpoint."""
    import torch

    from lightning_papers.modules import FastStyleTransfer

    torch.manual_seed(0)
    module = FastStyleTransfer(style_size=32, vgg_weights="random", sample_every_n_steps=0)
    return _fit_and_save(module, tmp_path_factory.mktemp("style"), "style.ckpt")


@pytest.fixture(scope="session")
def sr_checkpoint(tmp_path_factory):
    """(path, module in eval mode) of a x4 SuperResolution checkpoint (pixel loss, residual over bicubic)."""
    import torch

    from lightning_papers.modules import SuperResolution

    torch.manual_seed(0)
    module = SuperResolution(factor=4, loss="pixel", sample_every_n_epochs=0)
    return _fit_and_save(module, tmp_path_factory.mktemp("sr"), "sr.ckpt")
