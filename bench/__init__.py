"""Benchmark harness: ``bench/run.py`` (orchestrator) spawns ``bench.workloads`` per workload
and implementation. See bench/README.md.
"""
