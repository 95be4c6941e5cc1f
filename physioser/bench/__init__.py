"""Benchmarks writing their figures to eval/bench/*.json."""
