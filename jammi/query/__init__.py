"""Answering questions over the artifacts: similarity search and sandboxed SQL."""

MAX_K = 10_000  # the most results one search returns: a bound, not a way to dump a table
