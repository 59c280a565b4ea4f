"""Defaults that the pure domain and the settings share, in a module that imports nothing (the
settings are read before anything heavy is loaded)."""

from datetime import timedelta

WATCH_WINDOW = timedelta(hours=72)  # an open message silent this long is stale (SPEC §3 rule 8)
EAZITA_TIMEZONE = "Asia/Karachi"  # inferred (PROVIDER-NOTES.md): the provider is in Pakistan; a setting
