"""Platform pieces every app leans on: health checks, API conventions, diagnostics, the run stack."""
