"""Enrolment: invites, onboarding, settings and time zones (DESIGN §2.1)."""
