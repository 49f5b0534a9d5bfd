"""`python -m taskbench`: the same command as the `taskbench` console script."""

from taskbench.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
