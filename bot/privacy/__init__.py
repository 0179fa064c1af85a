"""Data rights: what is stored, the export and erasure (DESIGN §2.10)."""
