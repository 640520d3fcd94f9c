"""The preservation assets, over the whole archive (not partitioned): replicas caught up,
inventories kept current, and the fixity audit. Each calls one function of `preservation/`."""

import dagster as dg

from pipeline.failures import known_failures
from pipeline.resources import ArchiveServicesResource
from preservation import fixity, inventory, replication


def _age(state: replication.ReplicaState) -> str:
    return state.oldest_behind.isoformat() if state.oldest_behind else "none"


@dg.asset(name="replication", group_name="preservation", kinds={"s3"},
          check_specs=[dg.AssetCheckSpec("replicas_current", asset="replication",
                                         description="every stored object is on every replica (ARCHIVE_REPLICAS)")])
@known_failures
def replication_asset(context: dg.AssetExecutionContext, services: ArchiveServicesResource):
    """Every stored object copied to each replica and read back there; a replica that is down is
    left behind (the primary never waits for it) and caught up by a later run."""
    states = replication.replicate(services.services(), seconds=540)
    meta: dict = {"replicas": len(states)}
    for s in states:
        meta |= {f"{s.name}_copied": s.copied, f"{s.name}_behind": s.behind, f"{s.name}_behind_bytes": s.behind_bytes,
                 f"{s.name}_oldest_behind": _age(s), f"{s.name}_problem": s.problem or "none"}
        if s.problem:
            context.log.warning(f"replica {s.name}: {s.problem}")
    yield dg.MaterializeResult(metadata=meta)
    behind = [s for s in states if s.behind]
    yield dg.AssetCheckResult(check_name="replicas_current", passed=not behind, severity=dg.AssetCheckSeverity.WARN,
                              metadata={"behind": "; ".join(f"{s.name}: {s.behind} objects ({s.behind_bytes} bytes)"
                                                            f"{', ' + s.problem if s.problem else ''}"
                                                            for s in behind) or "none"})


@dg.asset(name="inventories", group_name="preservation", kinds={"s3", "json"})
@known_failures
def inventories_asset(context: dg.AssetExecutionContext, services: ArchiveServicesResource) -> dg.MaterializeResult:
    """A new inventory object for each personnel file that changed since its last one (transfer
    steps, events), so `archive rebuild-index` finds the store's description current."""
    svc = services.services()
    written = inventory.refresh(svc, inventory.stale(svc))
    return dg.MaterializeResult(metadata={"written": len(written)})


@dg.asset(name="fixity_audit", group_name="preservation", kinds={"s3"},
          check_specs=[dg.AssetCheckSpec("fixity_intact", asset="fixity_audit",
                                         description="no copy of any object corrupt or missing without repair")])
@known_failures
def fixity_audit_asset(context: dg.AssetExecutionContext, services: ArchiveServicesResource):
    """The day's share of objects re-read on every copy and compared with their sha256 (each
    within ARCHIVE_FIXITY_PERIOD_DAYS); a bad copy rewritten from a good one, both recorded in
    the files' histories."""
    svc = services.services()
    run = fixity.audit(svc, seconds=6 * 3600)   # a share left over is due first tomorrow
    touched = sorted(set(run.objects))
    inventory.refresh(svc, inventory.files_holding(svc, touched))
    for copy, why in run.unreachable.items():
        context.log.warning(f"copy {copy} could not be read: {why}")
    yield dg.MaterializeResult(metadata={
        "checked": run.checked, "bytes_read": run.bytes_read, "repaired": len(run.repaired),
        "unrepairable": len(run.unrepairable), "unreachable_copies": ", ".join(run.unreachable) or "none"})
    damaged = fixity.damaged(svc)
    yield dg.AssetCheckResult(check_name="fixity_intact", passed=not damaged, severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"damaged_copies": len(damaged), "copies": "; ".join(
                                  f"{d['key']} on {d['copy']}: {d['state']}" for d in damaged[:50]) or "none"})


PRESERVATION_ASSETS = [replication_asset, inventories_asset, fixity_audit_asset]
