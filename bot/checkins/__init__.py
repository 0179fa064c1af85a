"""Daily check-ins, lapses, the sobriety counter and progress (DESIGN §2.2, §2.4)."""
