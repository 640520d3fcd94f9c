"""The five pipeline stages as plain functions: intake → ocr → index → archive → transfer.

Each reads what the previous stage left in PostgreSQL and object storage, never another
stage's internals, and is idempotent: a rerun does no work twice and duplicates nothing.
"""
