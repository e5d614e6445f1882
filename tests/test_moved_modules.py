"""Modules that moved in 0.3.0 (issue 24's layout) still import for one release, each name with a
``DeprecationWarning`` that says where it is now, and is the very object of its new home."""

from __future__ import annotations

import importlib

import pytest

from lightning_papers import _helpers, schedules
from lightning_papers.callbacks import tensorboard_layout

INTERNAL = r"it is internal now \(lightning_papers\._helpers\); copy it if you rely on it"


@pytest.mark.parametrize(("old", "name", "new", "fix"), [
    ("tensorboard", "TensorBoardLayout", tensorboard_layout,
     "import it from lightning_papers.callbacks.tensorboard_layout"),
    ("devices", "autocast_dtype", _helpers, INTERNAL),
    ("devices", "PRECISIONS", _helpers, INTERNAL),
    ("files", "atomic_write", _helpers, INTERNAL),
    ("compiling", "CompiledOrEager", _helpers, INTERNAL),
    ("lr_owner", "owns_learning_rate", schedules, "import it from lightning_papers.schedules"),
])
def test_an_old_import_path_warns_once_per_use_and_gives_the_same_object(old, name, new, fix):
    module = importlib.import_module(f"lightning_papers.{old}")
    with pytest.warns(DeprecationWarning, match=rf"^lightning_papers\.{old}\.{name} is deprecated and goes in 0\.4\.0: "
                                                rf"{fix}$") as record:
        value = getattr(module, name)
    assert value is getattr(new, name)
    assert len(record) == 1 and record[0].filename == __file__  # the warning points at the user's line


def test_a_name_the_old_module_never_had_is_an_attribute_error():
    from lightning_papers import devices

    with pytest.raises(AttributeError, match="module 'lightning_papers.devices' has no attribute 'nope'"):
        devices.nope  # noqa: B018
