"""Launchable experiments: each YAML runs with ``lightning-papers fit --config`` and as a module."""
