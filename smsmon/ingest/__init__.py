"""Ingest: the callback listener (push) and, later, the pollers (pull), both writing through
one Committer per process."""
