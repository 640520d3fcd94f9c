"""Synthetic scan batches with ground truth, for the demo, the tests and the benchmarks."""
