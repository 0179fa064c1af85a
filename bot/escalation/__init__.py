"""Escalation: flags to the counselors, message-patient relays, on-call (DESIGN §2.6)."""
