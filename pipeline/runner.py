"""Runs a batch's assets, or a transfer's package, in-process: `archive demo`, `archive serve
--process`, `archive transfer request --package`, tests."""

import logging
import queue
import threading

import dagster as dg

from pipeline.assets import ASSETS
from pipeline.partitions import scan_batches, transfers
from pipeline.transfer_assets import transfer_package_asset

log = logging.getLogger(__name__)


def run_batch(batch_id: str, resources: dict, instance: dg.DagsterInstance,
              run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """Registers the batch's partition (idempotent) and materializes intake → archive."""
    if not instance.has_dynamic_partition(scan_batches.name, batch_id):
        instance.add_dynamic_partitions(scan_batches.name, [batch_id])
    return dg.materialize(ASSETS, partition_key=batch_id, resources=resources, instance=instance,
                          run_config=run_config, raise_on_error=True, tags={"batch": batch_id})


def run_transfer(transfer_id: str, resources: dict, instance: dg.DagsterInstance,
                 run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """Registers the transfer's partition and materializes its package."""
    if not instance.has_dynamic_partition(transfers.name, transfer_id):
        instance.add_dynamic_partitions(transfers.name, [transfer_id])
    return dg.materialize([transfer_package_asset], partition_key=transfer_id, resources=resources,
                          instance=instance, run_config=run_config, raise_on_error=True,
                          tags={"transfer": transfer_id})


class BatchQueue:
    """Runs handed-in batches and requested transfers one after another on a background thread,
    for a server that processes its own uploads (`archive serve --process`) instead of leaving
    them to the daemon's sensors. A failed run is logged in Dagster like any other and the queue
    goes on."""

    def __init__(self, resources: dict, instance: dg.DagsterInstance, run_config: dict | None = None) -> None:
        self._resources, self._instance, self._run_config = resources, instance, run_config
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="batch-queue", daemon=True)
        self._thread.start()

    def __call__(self, batch_id: str) -> None:
        self._queue.put(("batch", batch_id))

    def transfer(self, transfer_id: str) -> None:
        self._queue.put(("transfer", transfer_id))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            kind, key = item
            try:
                (run_batch if kind == "batch" else run_transfer)(key, self._resources, self._instance,
                                                                 self._run_config)
            except Exception:  # the run's failure is in Dagster's event log; the next one still runs
                log.exception("run of %s %s failed", kind, key)

    def close(self, timeout: float | None = None) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
