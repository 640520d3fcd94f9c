import dagster as dg

# One partition per scan batch, added when the batch is handed in (CLI, inbox sensor).
scan_batches = dg.DynamicPartitionsDefinition(name="scan_batches")
BATCH_JOB = "process_batch"  # the job that takes a batch from intake to archive

# One partition per transfer requested (staff web, CLI), keyed by its transfer id.
transfers = dg.DynamicPartitionsDefinition(name="transfers")
