"""Lightning callbacks: thin glue from Trainer hooks to the pure core, plus logging and state."""

from lightning_papers.callbacks.base import owns_learning_rate

__all__ = ["owns_learning_rate"]
