"""The benchmark harness: `make bench` (or `python -m bench.run`) measures and prints one table."""
