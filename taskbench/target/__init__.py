"""`run --target`: the user's running deployment, measured from outside."""
