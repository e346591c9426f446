"""Benchmarks (``nox -s bench -- NAME``): figures for docs/benchmarks.md, never asserted."""
