"""Admin registrations of stock."""
