"""Where each implementation runs: its environment, the releases in it, the user's own pins."""
