"""Simulated providers and traffic: realistic data for the demo, tests and benchmarks (SPEC §7)."""
