"""ResNet-56, LR range test, then ``triangular2`` CLR on CIFAR-10 (needs the data; see the YAML header):
``python -m recipes.clr.resnet56_cifar10_triangular2 [LightningCLI overrides]``."""

import sys

from recipes._launch import launch

if __name__ == "__main__":
    sys.exit(launch(__file__))
