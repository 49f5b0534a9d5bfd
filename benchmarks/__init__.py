"""Speed goals, measured as ratios in one run (see README.md here)."""
