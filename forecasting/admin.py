"""Admin registrations of forecasting."""
