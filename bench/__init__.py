"""Benchmarks (``make bench``) and the bench-only Django settings, URLs, provider and tasks they serve."""
