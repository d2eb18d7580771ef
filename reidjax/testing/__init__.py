"""Independent reference implementations used by tests and benchmarks (need PyTorch)."""
