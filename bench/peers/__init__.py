"""The peers of the side-by-side benchmark (``bench/bench_peers.py``): one module per task queue.

Each module holds both the no-op ADD task its workers import and the adapter the harness drives
(start/stop 2 worker processes, submit one or many, read the stored results, clean up).
"""
