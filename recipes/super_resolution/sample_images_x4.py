"""``python -m recipes.super_resolution.sample_images_x4 [overrides]``: fit with the YAML beside this file."""

import sys

from recipes._launch import launch

if __name__ == "__main__":
    sys.exit(launch(__file__))
