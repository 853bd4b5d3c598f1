"""Benchmarks: each prints the hub's figure beside a raw baseline measured in the same run."""
