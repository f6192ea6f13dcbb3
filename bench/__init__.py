"""Benchmarks, run from the repository root: `.venv/bin/python bench/<name>.py`."""
