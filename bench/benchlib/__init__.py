"""The pieces of bench/bench.py."""
