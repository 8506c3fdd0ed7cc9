"""API conventions shared by every app: error shape, pagination, platform endpoints."""
