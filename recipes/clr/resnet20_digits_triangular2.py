"""ResNet-20, LR range test, then ``triangular2`` CLR on the embedded digits:
``python -m recipes.clr.resnet20_digits_triangular2 [LightningCLI overrides]``."""

import sys

from recipes._launch import launch

if __name__ == "__main__":
    sys.exit(launch(__file__))
