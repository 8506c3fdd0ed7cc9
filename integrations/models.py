"""Data and invariants of integrations (filled in by its capability's issue)."""
