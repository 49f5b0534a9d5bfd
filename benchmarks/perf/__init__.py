"""Performance figures of the service and the harness, each against its goal: `python -m benchmarks.perf`."""
