"""Keeping what the archive stage stored: replicas, fixity audits with repair, and inventories
from which the database can be rebuilt."""
