"""Benchmarks of mlsweep: `make bench` (or `python -m bench --help`); results in RESULTS.md."""
