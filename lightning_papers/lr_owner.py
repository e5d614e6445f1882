"""Deprecated (goes in 0.4.0): ``owns_learning_rate`` is in :mod:`lightning_papers.schedules` now."""

from lightning_papers._helpers import moved

__getattr__ = moved(__name__, "lightning_papers.schedules", ("owns_learning_rate",))
