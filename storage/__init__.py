"""PostgreSQL and object storage. No Dagster here."""
