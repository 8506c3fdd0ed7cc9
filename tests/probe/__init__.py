"""A test-only app (installed with SUPPLYCHAIN_EXTRA_APPS=tests.probe): handlers whose effects tests count."""
