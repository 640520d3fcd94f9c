"""HTTP API for staff pages and, later, receiving provinces."""
