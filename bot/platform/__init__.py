"""Plumbing: configuration, time, storage, Telegram transport, inbox, outbox, sweeper. It knows nothing of patients."""
