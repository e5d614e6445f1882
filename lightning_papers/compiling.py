"""Deprecated (goes in 0.4.0): its helpers are internal now (``lightning_papers._helpers``)."""

from lightning_papers._helpers import moved

__getattr__ = moved(__name__, "lightning_papers._helpers", ("CompiledOrEager",))
