import dagster as dg

# One partition per scan batch, added when the batch is handed in (CLI, inbox sensor).
scan_batches = dg.DynamicPartitionsDefinition(name="scan_batches")
