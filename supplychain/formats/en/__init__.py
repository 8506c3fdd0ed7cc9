"""English formats for operations staff."""
