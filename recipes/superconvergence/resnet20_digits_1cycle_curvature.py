"""``python -m recipes.superconvergence.resnet20_digits_1cycle_curvature [overrides]``: fit with the YAML beside
this file (1cycle on the digits with ``CurvatureMonitor``)."""

import sys

from recipes._launch import launch

if __name__ == "__main__":
    sys.exit(launch(__file__))
