"""Admin registrations of integrations."""
