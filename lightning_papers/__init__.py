"""lightning-papers: five deep-learning papers as parts you attach to a PyTorch Lightning ``Trainer``.

``import lightning_papers`` stays light: it needs neither the CLI (jsonargparse) nor the embedded-data
extras (scikit-learn, scikit-image).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lightning-papers")
except PackageNotFoundError:  # running from a checkout with PYTHONPATH=.
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
