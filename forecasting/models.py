"""Data and invariants of forecasting (filled in by its capability's issue)."""
