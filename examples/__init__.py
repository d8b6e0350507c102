"""Worked examples of extending posttrain without touching its packages (see each module's docstring)."""
