"""The shared kernel: people, roles, staff, audit, chat state, life cycle and the clinical vocabulary every area speaks."""
