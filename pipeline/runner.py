"""Runs the five assets for one batch in-process: used by `archive demo` and the tests."""

import dagster as dg

from pipeline.assets import ASSETS
from pipeline.partitions import scan_batches


def run_batch(batch_id: str, resources: dict, instance: dg.DagsterInstance,
              run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """Registers the batch's partition (idempotent) and materializes intake → transfer."""
    if not instance.has_dynamic_partition(scan_batches.name, batch_id):
        instance.add_dynamic_partitions(scan_batches.name, [batch_id])
    return dg.materialize(ASSETS, partition_key=batch_id, resources=resources, instance=instance,
                          run_config=run_config, raise_on_error=True, tags={"batch": batch_id})
