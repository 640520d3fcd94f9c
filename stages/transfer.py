"""Transfer stage, sending side: a request for one personnel file to go to a registered agency,
the package and signed record the `transfer_package` asset makes of it, the receipt the
receiver posts back, and the watch for receipts that do not come.

A request is checked before it is taken: the file is this agency's and wholly preserved, the
receiver is in the registry with a signing key (its receipt must be verifiable), no other
transfer of the file is under way. States and their steps: transfer/states.py.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2.errors

from access import audit
from access.audit import Actor
from catalog import idnumber
from crossregion import outbox
from errors import ArchiveError, BadInput, NotFound, NotReady
from preservation.inventory import keep_current
from stages.files import reveal_id
from stages.services import Services
from storage import events
from storage.db import xact_lock
from storage.events import Event
from storage.objects import put_file_verified, put_verified, sha256_hex
from storage.stored import StoredObject, record_verified
from transfer import package as bag
from transfer import registry
from transfer.receipt import check_receipt
from transfer.record import build_record
from transfer.signing import Signer, canonical_json
from transfer.states import ACTIVE, STATUS_ZH, WrongState, begin, move, steps

log = logging.getLogger(__name__)
METHOD = "网络转递（BagIt 转递包，接收方经拉取接口下载）"
SYSTEM = Actor("pipeline", "dagster")


class TransferRefused(BadInput):
    """A request that cannot be taken: unknown receiver, missing reason, another under way."""


@dataclass(frozen=True)
class TransferRow:
    transfer_id: str
    file_number: str
    sending_agency: str
    receiving_agency: str
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime
    reason: str
    handler: str
    requested_by: str
    package_bytes: int | None
    package_sha256: str | None
    expires_at: dt.datetime | None
    overdue_at: dt.datetime | None
    platform_state: str            # its national records: none | pending | delivered | failed (staff must act)
    platform_failure: str | None   # why the platform (or our own check) refused the first that failed

    def to_dict(self) -> dict:
        out = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in self.__dict__.items()}
        return {**out, "status_zh": STATUS_ZH.get(self.status, self.status), "overdue": self.overdue_at is not None}


_COLUMNS = ", ".join(f"{outbox.TRANSFER_COLUMNS[f]} AS {f}" if f in outbox.TRANSFER_COLUMNS else f"t.{f}"
                     for f in TransferRow.__dataclass_fields__)


def _row(r: dict) -> TransferRow:
    return TransferRow(**{f: (str(r[f]) if f == "transfer_id" else r[f]) for f in TransferRow.__dataclass_fields__})


def _valid_uuid(transfer_id: str) -> str:
    try:
        return str(uuid.UUID(str(transfer_id)))
    except ValueError:
        raise NotFound(f"没有编号为 {transfer_id} 的转递", f"no transfer {transfer_id}",
                       item=str(transfer_id)) from None


def request_transfer(services: Services, file_number: str, receiving_agency: str, reason: str, handler: str,
                     actor: Actor) -> TransferRow:
    """A new transfer in state `requested`, for the `transfer_package` asset to build."""
    reason, handler = reason.strip(), handler.strip()
    if not reason or not handler:
        raise TransferRefused("请填写转递原因和经办人", "give the reason and the handler (经办人)", item=file_number)
    with services.db.transaction() as cur:
        cur.execute("SELECT holding_agency FROM personnel_files WHERE file_number = %s", (file_number,))
        held = cur.fetchone()
        if held is None or held["holding_agency"] != services.agency:
            raise NotFound(f"没有档号为 {file_number} 的档案", f"no personnel file {file_number}", item=file_number)
        if receiving_agency == services.agency:
            raise TransferRefused("不能转递给本机构", "a file cannot be transferred to its own agency",
                                  item=receiving_agency)
        cur.execute("SELECT 1 FROM agencies WHERE code = %s", (receiving_agency,))
        if cur.fetchone() is None:
            raise TransferRefused(f"接收机构 {receiving_agency} 未在机构登记中", f"receiving agency {receiving_agency} "
                                  "is not in the registry", item=receiving_agency)
        now = dt.datetime.now(dt.UTC)
        if not any(k.valid_from <= now and (k.valid_until is None or k.valid_until > now)
                   for k in registry.keys(cur, receiving_agency)):
            raise TransferRefused(f"接收机构 {receiving_agency} 尚未登记有效的签名公钥，无法核验其回执",
                                  f"receiving agency {receiving_agency} has no valid signing key in the registry: its "
                                  "receipt could not be verified", item=receiving_agency)
    bag.catalog_of(services, file_number)  # PackageNotReady names what is not yet preserved
    person_ref = idnumber.lookup_hash(reveal_id(services, file_number, services.agency),
                                       services.settings.platform_id_hash_key)  # never shown: hashed for the platform
    tid = str(uuid.uuid4())
    try:
        with services.db.transaction() as cur:
            cur.execute("INSERT INTO transfers (transfer_id, file_number, sending_agency, receiving_agency, status,"
                        " reason, handler, requested_by, person_ref) VALUES (%s, %s, %s, %s, 'requested', %s, %s, %s,"
                        " %s)", (tid, file_number, services.agency, receiving_agency, reason, handler, actor.name,
                                 person_ref))
            begin(cur, tid, {"by": actor.name, "reason": reason, "handler": handler})
            audit.record(cur, actor, "transfer.request", target=tid, file_numbers=[file_number],
                         detail={"receiving_agency": receiving_agency})
            events.record(cur, [Event("transfer_requested", file_number=file_number, detail={
                "transfer_id": tid, "receiving_agency": receiving_agency, "reason": reason, "handler": handler})])
    except psycopg2.errors.UniqueViolation:
        raise TransferRefused(f"档案 {file_number} 已有一个进行中的转递，请待其完成或撤销",
                              f"file {file_number} has a transfer under way: let it finish or cancel it",
                              item=file_number) from None
    keep_current(services, [file_number])
    return transfer(services, tid, services.agency)


def transfer(services: Services, transfer_id: str, agency: str | None = None) -> TransferRow:
    """One transfer, sent or addressed to `agency` (None: any); NotFound otherwise."""
    tid = _valid_uuid(transfer_id)
    with services.db.transaction() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM transfers t WHERE t.transfer_id = %s AND (%s::text IS NULL"
                    " OR t.sending_agency = %s OR t.receiving_agency = %s)", (tid, agency, agency, agency))
        r = cur.fetchone()
    if r is None:
        raise NotFound(f"没有编号为 {transfer_id} 的转递", f"no transfer {transfer_id}", item=transfer_id)
    return _row(r)


def transfers(services: Services, *, sender: str | None = None, receiver: str | None = None,
              status: tuple[str, ...] | None = None, file_number: str | None = None,
              limit: int = 200) -> list[TransferRow]:
    with services.db.transaction() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM transfers t WHERE (%(s)s::text IS NULL OR t.sending_agency = %(s)s)"
                    " AND (%(r)s::text IS NULL OR t.receiving_agency = %(r)s)"
                    " AND (%(st)s::text[] IS NULL OR t.status = ANY(%(st)s))"
                    " AND (%(f)s::text IS NULL OR t.file_number = %(f)s) ORDER BY t.created_at DESC LIMIT %(n)s",
                    {"s": sender, "r": receiver, "st": list(status) if status else None, "f": file_number,
                     "n": limit})
        return [_row(r) for r in cur.fetchall()]


def transfer_detail(services: Services, transfer_id: str, agency: str | None) -> dict:
    """A transfer with its person, its steps and (once made) its notice, for the staff web and CLI."""
    t = transfer(services, transfer_id, agency)
    with services.db.transaction() as cur:
        cur.execute("SELECT t.notice, t.receipt, f.name, f.id_masked, a.name AS receiver_name FROM transfers t"
                    " JOIN personnel_files f USING (file_number) JOIN agencies a ON a.code = t.receiving_agency"
                    " WHERE t.transfer_id = %s", (t.transfer_id,))
        r = cur.fetchone()
        history = steps(cur, t.transfer_id)
        national = outbox.of_transfer(cur, t.transfer_id)
    return {**t.to_dict(), "name": r["name"], "id_masked": r["id_masked"], "receiving_agency_name": r["receiver_name"],
            "notice": r["notice"], "receipt": r["receipt"], "steps": history, "platform": national}


def cancel_transfer(services: Services, transfer_id: str, actor: Actor, why: str = "") -> TransferRow:
    t = transfer(services, transfer_id, services.agency)
    if t.sending_agency != services.agency:
        raise NotFound(f"没有编号为 {transfer_id} 的转递", f"no transfer {transfer_id}", item=transfer_id)
    with services.db.transaction() as cur:
        move(cur, t.transfer_id, "cancelled", {"by": actor.name, "why": why})
        audit.record(cur, actor, "transfer.cancel", target=t.transfer_id, file_numbers=[t.file_number])
        events.record(cur, [Event("transfer_cancelled", file_number=t.file_number,
                                  detail={"transfer_id": t.transfer_id, "why": why})])
    keep_current(services, [t.file_number])
    return transfer(services, t.transfer_id)


@dataclass(frozen=True)
class PackageResult:
    transfer_id: str
    file_number: str
    package_key: str
    package_sha256: str
    package_bytes: int
    record_key: str
    material_count: int
    page_count: int
    made: bool   # False: it was made before (a rerun does nothing)


def register_own_key(services: Services, signer: Signer) -> None:
    """This agency's signing key in its own registry (what `archive agencies export` hands on)."""
    with services.db.transaction() as cur:
        cur.execute("SELECT 1 FROM agency_keys WHERE agency = %s AND key_id = %s", (services.agency, signer.key_id))
        if cur.fetchone() is None:
            registry.add_key(cur, services.agency, signer.key_id, signer.public_bytes(), dt.datetime.now(dt.UTC))


def _notice(cur, t: TransferRow) -> dict:
    cur.execute("SELECT code, name FROM agencies WHERE code IN (%s, %s)", (t.sending_agency, t.receiving_agency))
    names = {r["code"]: r["name"] for r in cur.fetchall()}
    return {"file_number": t.file_number, "sending_agency": t.sending_agency,
            "sending_agency_name": names[t.sending_agency], "receiving_agency": t.receiving_agency,
            "receiving_agency_name": names[t.receiving_agency], "volumes": {"original": 1, "copies": 0},
            "reason": t.reason, "method": METHOD, "tracking_number": t.transfer_id, "handler": t.handler,
            "date": dt.date.today().isoformat()}


def package_transfer(services: Services, transfer_id: str, signer: Signer) -> PackageResult:
    """Builds, stores and signs the transfer's package: requested → packaged → available. A
    transfer packaged before (a rerun, or a run that stopped after the package) goes on from
    where it is; one already available is returned as it is. NotReady while another process
    packages the same transfer, so that the work is done once. Correct without that lock too
    (its connection may drop mid-way): the package and the record are stored under keys of
    their own content, and only the first packager's state step takes; a later one's objects
    are removed."""
    with services.db.transaction() as lock:  # held, on a connection of its own, until the package is made
        if not xact_lock(lock, f"transfer-package:{transfer_id}", wait=False):
            raise PackagingBusy(transfer_id)
        return _package(services, transfer_id, signer)


class PackagingBusy(NotReady):
    """Another process packages the transfer now; passes by itself: a step retried later finds
    the package made (or, if that packager died, makes it)."""

    transient = True

    def __init__(self, transfer_id: str) -> None:
        super().__init__(f"转递 {transfer_id} 正由另一进程打包，请稍后再看",
                         f"transfer {transfer_id} is being packaged by another run: look again shortly",
                         item=transfer_id)


def _package(services: Services, transfer_id: str, signer: Signer) -> PackageResult:
    t = transfer(services, transfer_id)
    register_own_key(services, signer)
    made = False
    if t.status == "requested":
        workdir = Path(services.settings.transfer_dir) / "outgoing"
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{t.transfer_id}-", dir=workdir))
        try:
            with services.db.transaction() as cur:
                notice = _notice(cur, t)
            bag_info = {"Source-Organization": notice["sending_agency_name"],
                        "Receiving-Organization": notice["receiving_agency_name"],
                        "External-Identifier": t.transfer_id, "Internal-Sender-Identifier": t.file_number,
                        "External-Description": f"人事档案转递包 / personnel file {t.file_number}"}
            p = bag.build(services, t.transfer_id, t.file_number, notice, bag_info, tmp)
            # its own content's: no other packager writes it; ending in the digest, an interrupted
            # upload of it is resumed, never aborted (storage/s3store.py)
            key = f"transfers/{t.transfer_id}/package-{p.sha256}"
            put_file_verified(services.store, services.archive_bucket, key, p.path, p.sha256, "application/x-tar")

            def packaged(cur) -> None:
                move(cur, t.transfer_id, "packaged", {"package_sha256": p.sha256, "bytes": p.bytes,
                                                      "tagmanifest_sha256": p.tagmanifest_sha256},
                     package_key=key, package_sha256=p.sha256, package_bytes=p.bytes,
                     notice=json.dumps({**p.notice, "tagmanifest_sha256": p.tagmanifest_sha256,
                                        "payload_oxum": p.payload_oxum}, ensure_ascii=False))
                record_verified(cur, [StoredObject(services.archive_bucket, key, p.sha256, p.bytes,
                                                   "transfer-package", "application/x-tar")])

            made = _step_or_remove(services, key, packaged)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        t = transfer(services, t.transfer_id)
    if t.status == "packaged":
        _sign(services, t, signer)
    elif t.status not in ACTIVE and t.status != "received":
        raise NotReady(f"转递 {t.transfer_id} 已{STATUS_ZH.get(t.status, t.status)}，不再打包",
                       f"transfer {t.transfer_id} is {t.status}: it is not packaged", item=t.transfer_id)
    with services.db.transaction() as cur:
        cur.execute("SELECT notice, record_key, package_key FROM transfers WHERE transfer_id = %s", (t.transfer_id,))
        r = cur.fetchone()
    _remove_unrecorded(services, t.transfer_id)
    keep_current(services, [t.file_number])
    return PackageResult(t.transfer_id, t.file_number, r["package_key"], t.package_sha256 or "", t.package_bytes or 0,
                         r["record_key"], r["notice"]["material_count"], r["notice"]["page_count"], made=made)


def _sign(services: Services, t: TransferRow, signer: Signer) -> None:
    with services.db.transaction() as cur:
        cur.execute("SELECT t.notice, f.name, f.id_masked FROM transfers t JOIN personnel_files f USING (file_number)"
                    " WHERE t.transfer_id = %s", (t.transfer_id,))
        r = cur.fetchone()
    notice = dict(r["notice"])
    tagmanifest, oxum = notice.pop("tagmanifest_sha256"), notice.pop("payload_oxum")
    record = signer.sign(build_record(
        transfer_id=t.transfer_id,
        sender={"code": t.sending_agency, "name": notice["sending_agency_name"]},
        receiver={"code": t.receiving_agency, "name": notice["receiving_agency_name"]},
        file={"file_number": t.file_number, "name": r["name"], "id_masked": r["id_masked"],
              "material_count": notice["material_count"], "page_count": notice["page_count"]},
        notice=notice,
        package={"sha256": t.package_sha256, "bytes": t.package_bytes, "tagmanifest_sha256": tagmanifest,
                 "payload_oxum": oxum, "format": "BagIt 1.0, tar"},
        valid_days=services.settings.transfer_valid_days))
    body = canonical_json(record)
    key = f"transfers/{t.transfer_id}/record-{sha256_hex(body)}"  # its own content's, as the package's
    digest = put_verified(services.store, services.archive_bucket, key, body, "application/json")

    def available(cur) -> None:
        move(cur, t.transfer_id, "available", {"record_id": record["record_id"], "record_sha256": digest,
                                               "signed_by": signer.key_id, "expires_at": record["expires_at"]},
             record=json.dumps(record, ensure_ascii=False), record_sha256=digest, record_key=key,
             record_id=record["record_id"], expires_at=record["expires_at"])
        record_verified(cur, [StoredObject(services.archive_bucket, key, digest, len(body), "transfer-record",
                                           "application/json")])
        events.record(cur, [Event("transferred", file_number=t.file_number, object_sha256=t.package_sha256, detail={
            "transfer_id": t.transfer_id, "status": "available", "receiving_agency": t.receiving_agency,
            "record_sha256": digest, "signed_by": signer.key_id})])

    _step_or_remove(services, key, available)


_PACKAGER_OBJECT = re.compile(r"(package|record)-[0-9a-f]{64}")


def _remove_unrecorded(services: Services, transfer_id: str) -> list[str]:
    """Removes the transfer's packages and records that no row records: a packager killed
    between its upload and its state step leaves one. Called once the transfer is signed: a
    packager still at work on it can then only lose its step, so nothing removed here could
    still be recorded. The keys removed."""
    prefix = f"transfers/{transfer_id}/"
    candidates = [key for key, _ in services.store.keys(services.archive_bucket, prefix)
                  if _PACKAGER_OBJECT.fullmatch(key.removeprefix(prefix))]
    if not candidates:
        return []
    with services.db.transaction() as cur:
        cur.execute("SELECT key FROM stored_objects WHERE bucket = %s AND key = ANY(%s)",
                    (services.archive_bucket, candidates))
        recorded = {row["key"] for row in cur.fetchall()}
    removed = []
    for key in sorted(set(candidates) - recorded):
        try:
            services.store.delete(services.archive_bucket, key)
            removed.append(key)
        except ArchiveError as exc:  # a write-once bucket keeps it: unrecorded, it is nobody's
            log.warning("unrecorded %s left in the archive: %s", key, exc.message_en)
    if removed:
        log.info("transfer %s: removed %d unrecorded objects of a packager that stopped: %s", transfer_id,
                 len(removed), ", ".join(removed))
    return removed


def _step_or_remove(services: Services, key: str, step: Callable[[Any], None]) -> bool:
    """`step(cur)`, the state step that records the object at `key`, in one transaction: True.
    False when another packager took that step first (WrongState): the object this one stored
    is removed, unless it is the winner's too (the same bytes), and the caller goes on from the
    winner's."""
    try:
        with services.db.transaction() as cur:
            step(cur)
        return True
    except WrongState:
        with services.db.transaction() as cur:  # the winner's step, and its record, committed before ours failed
            cur.execute("SELECT 1 FROM stored_objects WHERE bucket = %s AND key = %s", (services.archive_bucket, key))
            if cur.fetchone():
                return False
        try:
            services.store.delete(services.archive_bucket, key)
        except ArchiveError as exc:  # a write-once bucket keeps it: unrecorded, it is nobody's
            log.warning("unrecorded %s left in the archive: %s", key, exc.message_en)
        return False


def served(services: Services, transfer_id: str, who: Actor) -> None:
    """The receiver has had the whole package: available → fetched (once)."""
    with services.db.transaction() as cur:
        cur.execute("SELECT status, file_number FROM transfers WHERE transfer_id = %s", (transfer_id,))
        if (row := cur.fetchone()) and row["status"] == "available":
            move(cur, transfer_id, "fetched", {"by": who.name, "client": who.client})
        else:
            return
    keep_current(services, [row["file_number"]])


def accept_receipt(services: Services, transfer_id: str, receipt: dict, who: Actor) -> TransferRow:
    """The receiver's signed receipt or rejection, checked (transfer/receipt.py) and kept:
    available or fetched → received or rejected. The same receipt posted again changes nothing."""
    t = transfer(services, transfer_id)
    with services.db.transaction() as cur:
        cur.execute("SELECT * FROM transfers WHERE transfer_id = %s FOR UPDATE", (t.transfer_id,))
        row = cur.fetchone()
        again = isinstance(receipt, dict) and row["receipt"] and row["receipt"].get("receipt_id") == receipt.get(
            "receipt_id")
        if again:
            return t
        check_receipt(cur, receipt, row)
        outcome = receipt["outcome"]
        move(cur, t.transfer_id, outcome, {"receipt_id": str(receipt.get("receipt_id")), "by": who.name,
                                           "failed_checks": [c["code"] for c in receipt.get("failed_checks", [])]},
             receipt=json.dumps(receipt, ensure_ascii=False), overdue_at=None)
        events.record(cur, [Event(f"transfer_{outcome}", outcome="success" if outcome == "received" else "failure",
                                  file_number=t.file_number, detail={
                                      "transfer_id": t.transfer_id, "receiving_agency": t.receiving_agency,
                                      "receipt_id": receipt["receipt_id"], "at": receipt["at"],
                                      "failed_checks": receipt.get("failed_checks", [])})])
    keep_current(services, [t.file_number])
    return transfer(services, t.transfer_id)


@dataclass(frozen=True)
class Watch:
    overdue: list[TransferRow]   # flagged, still waiting for a receipt
    newly_overdue: int
    expired: int                 # past their record's expiry: no receipt can be accepted any more


def watch_receipts(services: Services, now: dt.datetime | None = None) -> Watch:
    """Flags transfers with no receipt `receipt_overdue_hours` after they became available, and
    expires those past their record's expiry. Run by the `transfer_receipts` schedule."""
    now = now or dt.datetime.now(dt.UTC)
    hours = services.settings.receipt_overdue_hours
    with services.db.transaction() as cur:
        cur.execute("SELECT transfer_id FROM transfers WHERE status IN ('available', 'fetched') AND expires_at <= %s",
                    (now,))
        expired = [str(r["transfer_id"]) for r in cur.fetchall()]
        for tid in expired:
            move(cur, tid, "expired", {"expires_before": now.isoformat()})
        cur.execute("UPDATE transfers t SET overdue_at = %s WHERE status IN ('available', 'fetched')"
                    " AND overdue_at IS NULL AND (SELECT max(at) FROM transfer_events e"
                    " WHERE e.transfer_id = t.transfer_id AND e.status = 'available') <= %s",
                    (now, now - dt.timedelta(hours=hours)))
        newly = cur.rowcount
        for tid in expired:
            cur.execute("SELECT file_number FROM transfers WHERE transfer_id = %s", (tid,))
            events.record(cur, [Event("transfer_expired", outcome="failure", file_number=cur.fetchone()["file_number"],
                                      detail={"transfer_id": tid})])
    overdue = [t for t in transfers(services, sender=services.agency, status=("available", "fetched"))
               if t.overdue_at is not None]
    return Watch(overdue, newly, len(expired))


def _made(services: Services, transfer_id: str, column: str) -> str | dict | None:
    """A column packaging wrote (`package_key`, `record`), None before; NotFound for no transfer."""
    with services.db.transaction() as cur:
        cur.execute(f"SELECT {column} AS v FROM transfers WHERE transfer_id = %s", (_valid_uuid(transfer_id),))
        r = cur.fetchone()
    if r is None:
        raise NotFound(f"没有编号为 {transfer_id} 的转递", f"no transfer {transfer_id}", item=transfer_id)
    return r["v"]


def package_key_of(services: Services, transfer_id: str) -> str:
    """Where the transfer's package is stored (a key of its own content)."""
    if (key := _made(services, transfer_id, "package_key")) is None:
        raise NotFound(f"转递 {transfer_id} 尚无转递包", f"transfer {transfer_id} has no package", item=transfer_id)
    return key


def record_of(services: Services, transfer_id: str) -> dict:
    if (record := _made(services, transfer_id, "record")) is None:
        raise NotFound(f"没有编号为 {transfer_id} 的转递", f"no transfer {transfer_id}", item=transfer_id)
    return record
