"""``python -m lightning_papers.cli ...`` is ``lightning-papers ...`` (e.g. under ``torchrun``)."""

import sys

from lightning_papers.cli import main

if __name__ == "__main__":  # pragma: no cover - run by the tests in a subprocess
    sys.exit(main())
