"""Side-by-side speed measurements; run a module with ``python -m benchmarks.NAME``."""
