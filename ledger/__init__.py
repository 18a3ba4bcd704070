"""The append-only log, sealing of personal values, and publishing."""
