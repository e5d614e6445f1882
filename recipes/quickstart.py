"""ResNet-20 on the embedded digits: ``python -m recipes.quickstart [LightningCLI overrides]``."""

import sys

from recipes._launch import launch

if __name__ == "__main__":
    sys.exit(launch(__file__))
