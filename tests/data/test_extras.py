import importlib
import subprocess
import sys

import pytest

from lightning_papers.data._extras import MissingExtraError, require_extra
from lightning_papers.recipes import recipe_path


def test_require_extra_returns_the_module():
    assert require_extra("sklearn.datasets", "DigitsDataModule") is importlib.import_module("sklearn.datasets")


def test_missing_extra_names_the_package_and_the_install_command():
    with pytest.raises(ImportError, match=r"The thing needs 'no_such_pkg' \(the data extra\): install it with "
                                          r"`pip install \"lightning-papers\[data\]\"`"):
        require_extra("no_such_pkg.sub", "The thing")


def test_missing_extra_names_the_extra_it_belongs_to():
    with pytest.raises(ImportError, match=r"ONNX export needs 'no_such_pkg' \(the export extra\): install it with "
                                          r"`pip install \"lightning-papers\[export\]\"`"):
        require_extra("no_such_pkg", "ONNX export", extra="export")


# -- every command that needs an extra: one line naming the pip install, exit 2, no traceback -------------------
# Each command runs in a fresh interpreter, as a user runs it, with the extra's packages made unimportable
# (``sys.modules[name] = None``), and everything it prints to stderr is checked.
HIDE_AND_RUN = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from lightning_papers.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run_without(packages: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE_AND_RUN, packages, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def _one_line(proc: subprocess.CompletedProcess, command: str, extra: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()  # before the error, Lightning's Trainer may have logged its set-up
    errors = [line for line in lines if ": error: " in line]
    assert errors == lines[-1:] and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert errors[0].startswith(f"lightning-papers {command}: error: "), errors
    assert f'pip install "lightning-papers[{extra}]"' in errors[0], errors
    return errors[0]


def test_a_hidden_package_really_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "no_such_pkg", None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.delitem(sys.modules, "sklearn.datasets", raising=False)
    with pytest.raises(MissingExtraError, match=r"pip install \"lightning-papers\[data\]\""):
        require_extra("sklearn.datasets", "DigitsDataModule")


def test_demo_without_the_data_extra(tmp_path):
    proc = _run_without("sklearn,skimage", "demo", "--fast", "--device", "cpu", "--out", "runs", cwd=tmp_path)
    line = _one_line(proc, "demo", "data")
    assert "The demo needs 'sklearn' (the data extra)" in line and "INFO" not in proc.stderr  # before any Trainer
    assert not (tmp_path / "runs").exists()


def test_fit_of_a_digits_recipe_without_the_data_extra(tmp_path):
    proc = _run_without("sklearn", "fit", "--config", str(recipe_path("quickstart")), "--trainer.fast_dev_run=true",
                        "--trainer.enable_progress_bar=false", cwd=tmp_path)
    assert "DigitsDataModule needs 'sklearn' (the data extra)" in _one_line(proc, "fit", "data")


def test_fit_of_a_sample_photographs_recipe_without_the_data_extra(tmp_path):
    proc = _run_without("skimage", "fit", "--config", str(recipe_path("sample_images_x4")),
                        "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false", cwd=tmp_path)
    assert "Loading the sample photographs needs 'skimage' (the data extra)" in _one_line(proc, "fit", "data")


def test_onnx_export_without_the_export_extra(style_checkpoint, tmp_path):
    proc = _run_without("onnx", "export", "--ckpt", str(style_checkpoint[0]), "--format", "onnx", "--output",
                        "m.onnx", cwd=tmp_path)
    assert "ONNX export needs 'onnx' (the export extra)" in _one_line(proc, "export", "export")
    assert not (tmp_path / "m.onnx").exists()


def test_debug_still_shows_the_traceback(tmp_path):
    proc = _run_without("sklearn", "--debug", "demo", "--fast", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "MissingExtraError" in proc.stderr
