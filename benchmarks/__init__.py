"""Benchmarks: each prints its figures and ends with one JSON line. Not tests: nothing here fails on a slow machine."""
