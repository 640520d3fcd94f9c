"""Intake validation of a scan batch: scan files by content, and the catalog-to-image link."""
