"""Data and invariants of stock (filled in by its capability's issue)."""
