"""Kept for imports of the old path: the optional-extra imports live in :mod:`lightning_papers._extras`."""

from lightning_papers._extras import MissingExtraError, require_extra

__all__ = ["MissingExtraError", "require_extra"]
