"""Pipelines: run the four stages in order, each stage's output feeding the next (see `make pipeline`)."""
