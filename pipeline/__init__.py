"""Dagster definitions: a thin shell over the plain stage functions in `stages/`."""
