"""``lightning_papers.recipes`` and ``lightning-papers recipes list|show|copy``: the recipes ship in the package
(package data in pyproject.toml), are found by name, and a copy runs with ``lightning-papers fit --config`` from an
empty folder."""

from __future__ import annotations

import fnmatch
import subprocess
from pathlib import Path

import pytest

from lightning_papers.cli import main
from lightning_papers.recipes import copy_recipe, list_recipes, read_recipe, recipe_path

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "lightning_papers" / "recipes"


def tracked_yaml() -> list[str]:
    """The recipe files git tracks (an independent list: not the package's own glob)."""
    out = subprocess.run(["git", "ls-files", "*.yaml"], cwd=FOLDER, capture_output=True, text=True, check=True)
    return sorted(out.stdout.split())


def test_every_tracked_recipe_is_listed_by_name():
    files = tracked_yaml()
    assert len(files) >= 14 and "quickstart.yaml" in files
    assert list_recipes() == sorted(f.removesuffix(".yaml") for f in files)


def test_pyproject_ships_every_recipe_in_the_wheel():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["lightning_papers.recipes"]
    unshipped = [f for f in tracked_yaml() if not any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/")
                                                      for g in globs)]
    assert not unshipped, unshipped


@pytest.mark.parametrize("name", ["clr/resnet20_digits_triangular2", "resnet20_digits_triangular2",
                                  "resnet20_digits_triangular2.yaml"])
def test_a_recipe_is_found_by_its_path_or_its_last_part(name):
    assert recipe_path(name) == FOLDER / "clr" / "resnet20_digits_triangular2.yaml"
    assert read_recipe(name) == (FOLDER / "clr" / "resnet20_digits_triangular2.yaml").read_text()


def test_an_unknown_or_ambiguous_name_lists_the_names(monkeypatch):
    with pytest.raises(ValueError, match=r"Expected a recipe name from .*quickstart.*, got 'quickstar': an unknown"):
        recipe_path("quickstar")
    monkeypatch.setattr("lightning_papers.recipes.list_recipes", lambda: ["a/x", "b/x"])
    with pytest.raises(ValueError, match=r"got 'x': an ambiguous name \(a/x, b/x\)"):
        recipe_path("x")


def test_copy_writes_the_recipe_and_refuses_to_replace_a_file(tmp_path):
    dst = copy_recipe("quickstart", tmp_path / "new")
    assert dst == tmp_path / "new" / "quickstart.yaml"
    assert dst.read_bytes() == (FOLDER / "quickstart.yaml").read_bytes()
    dst.write_text("mine")
    with pytest.raises(FileExistsError, match=r"quickstart\.yaml' exists: remove it, pick another folder or pass"):
        copy_recipe("quickstart", tmp_path / "new")
    assert dst.read_text() == "mine"
    copy_recipe("quickstart", tmp_path / "new", overwrite=True)
    assert dst.read_bytes() == (FOLDER / "quickstart.yaml").read_bytes()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["quickstart.yaml"]  # no temporary file left
    with pytest.raises(NotADirectoryError, match=r"Expected a folder to copy the recipe into, got the file"):
        copy_recipe("quickstart", dst)


def test_the_command_lists_shows_and_copies(capsys):
    assert main(["recipes", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list_recipes()
    assert "Quickstart: CIFAR ResNet-20" in lines[list_recipes().index("quickstart")]
    assert main(["recipes", "show", "resnet56_cifar10_1cycle"]) == 0
    assert capsys.readouterr().out == read_recipe("superconvergence/resnet56_cifar10_1cycle").rstrip("\n") + "\n"
    assert main(["recipes", "copy", "quickstart"]) == 0  # into the test's empty working directory
    assert "run it: lightning-papers fit --config quickstart.yaml" in capsys.readouterr().out
    assert Path("quickstart.yaml").read_bytes() == (FOLDER / "quickstart.yaml").read_bytes()


def test_the_command_reports_a_bad_name_or_an_existing_copy_in_one_line(capsys):
    assert main(["recipes", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lightning-papers recipes: error: Expected a recipe name from") and err.count("\n") == 1
    Path("quickstart.yaml").write_text("mine")
    assert main(["recipes", "copy", "quickstart", "."]) == 2
    assert "exists: remove it" in capsys.readouterr().err
    assert Path("quickstart.yaml").read_text() == "mine"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_copied_recipe_fits_from_an_empty_folder(capsys):
    assert main(["recipes", "copy", "quickstart", "mine"]) == 0
    assert main(["fit", "--config", "mine/quickstart.yaml", "--trainer.max_steps=1", "--trainer.limit_val_batches=1",
                 "--trainer.enable_progress_bar=false", "--data.init_args.batch_size=8"]) == 0
    assert list(Path("runs/quickstart").iterdir())  # the recipe's TensorBoard logger wrote here
    assert Path("mine/quickstart.yaml").read_bytes() == (FOLDER / "quickstart.yaml").read_bytes()
