"""Relapse prevention: /sos, the patient's plan and daily tips (DESIGN §2.5)."""
