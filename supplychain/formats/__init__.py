"""Formats for the admin and templates, per language (FORMAT_MODULE_PATH)."""
