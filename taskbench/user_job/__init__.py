"""`--job`: the user's own function, checked and tried before anything starts."""
