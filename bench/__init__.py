"""relaychat benchmarks: ``python bench/run.py`` (see bench/README.rst)."""
