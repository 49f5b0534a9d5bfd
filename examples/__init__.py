"""Example job functions for `taskbench run --job`: see examples/jobs.py and the README."""
