"""smsmon: a terminal monitor for SMS delivery."""

__version__ = "0.1.0"
