"""A whole run: the plan, each scenario in turn, searches, progress."""
