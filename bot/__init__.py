"""iop-bot: a Telegram companion for Intensive Outpatient Programs."""

__version__ = "0.1.0"
