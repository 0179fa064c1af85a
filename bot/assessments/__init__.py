"""Assessments: the weekly recovery check, PHQ-9 and GAD-7 (DESIGN §2.3)."""
