"""Chinese search over personnel files and OCR text in PostgreSQL."""
