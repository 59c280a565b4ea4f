"""The Textual app (SPEC §9). Only this package imports textual."""
