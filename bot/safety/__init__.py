"""Safety: risk screening of every text, the crisis reply, safety signals (DESIGN §2.6)."""
