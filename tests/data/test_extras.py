import importlib

import pytest

from lightning_papers.data._extras import require_extra


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
