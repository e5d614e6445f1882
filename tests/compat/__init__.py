"""The compatibility matrix: every callback of the package on models people train today (issue 22).

``python -m tests.compat.matrix --write`` runs it and writes the table into docs/compatibility.md.
"""
