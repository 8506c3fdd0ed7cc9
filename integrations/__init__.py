"""Integrations: orders and everything that crosses the company boundary (partners, webhooks, alerts)."""
