"""The demo's second agency: Guangdong's own installation of this software beside Guizhou's
(its own database, buckets, signing key and ID keys, in the demo's PostgreSQL and store), and
one transfer between them over the real pull API: requested, packaged by its Dagster asset,
fetched over HTTP, verified, receipted and imported, then searched for at the receiver.

Each step's time is read from the two sides' own timestamps, so a demo run after the first,
which finds the transfer done (a file has one transfer under way or done, not one a run),
shows the same steps as the run that made it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from access import accounts
from access.audit import Actor
from devservices.instance import LocalInstance
from errors import IntegrityFailure
from pipeline.resources import ArchiveServicesResource, SignerResource
from pipeline.runner import run_transfer
from search.query import Filters, search
from settings import Settings
from stages import receive
from stages import transfer as stage
from stages.services import Services
from storage.config import StorageSettings
from transfer import registry
from transfer.client import PullClient
from transfer.signing import Signer
from web.app import create_app
from web.server import serving

RECEIVER = "440000"
RECEIVER_NAME = "广东省人才交流服务中心"
RECEIVER_DATABASE = "archive_gd"
DEMO_FILE = "GZ2026-0070001"
ACTOR = Actor("cli:demo", "cli")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{6,12}")


@dataclass(frozen=True)
class TransferShown:
    transfer_id: str
    file_number: str
    person: str
    sender: str
    receiver: str
    status: str
    steps: list[tuple[str, float]]   # (step, seconds), from the recorded timestamps
    total: float
    package_bytes: int
    made_now: bool
    name_hits: int                   # the receiver's search for the person's name: files found
    phrase: str
    phrase_hits: int

    def lines(self) -> list[str]:
        when = "now" if self.made_now else "in an earlier demo run; its steps as recorded"
        out = [f"  transfer / 转递     {self.file_number} {self.person}: {self.sender} → {self.receiver} "
               f"{RECEIVER_NAME}, {self.status} ({when})",
               f"                      transfer {self.transfer_id}, package {self.package_bytes / 1e6:.1f} MB "
               "(BagIt), fetched over the pull API"]
        out += [f"    {name:<22} {seconds:6.2f} s" for name, seconds in self.steps]
        out.append(f"    {'request → imported':<22} {self.total:6.2f} s")
        found = {True: "finds it", False: "DOES NOT FIND IT"}
        out.append(f"  at {self.receiver} / 接收方   search “{self.person}” {found[self.name_hits > 0]} "
                   f"({self.name_hits} hits), phrase “{self.phrase}” {found[self.phrase_hits > 0]} "
                   f"({self.phrase_hits} hits), in its own {RECEIVER_DATABASE} and gd-archive")
        return out


def receiver_services(instance: LocalInstance) -> Services:
    """Guangdong's installation: its database in the demo's cluster, its buckets in the store,
    its own ID keys (demo keys, like the sender's)."""
    instance.postgres.ensure_database(RECEIVER_DATABASE)
    base = StorageSettings.from_env()
    storage = StorageSettings(instance.postgres.url(RECEIVER_DATABASE), base.s3_endpoint_url, base.object_root,
                              "gd-staging", "gd-archive", base.s3_region)
    settings = dataclasses.replace(
        Settings.from_env(), agency_code=RECEIVER, agency_name=RECEIVER_NAME,
        id_hash_key=hashlib.sha256(b"demo id hash key of 440000").digest(),
        id_key_current="gd-demo", id_keys={"gd-demo": hashlib.sha256(b"demo id key of 440000").digest()})
    services = Services.from_settings(storage, settings=settings)
    services.prepare()
    return services


def introduce(sender: Services, sender_key: Signer, receiver: Services, receiver_key: Signer, endpoint: str) -> str:
    """Each registry learns the other agency and its key (as `archive agencies export` and
    `import` would carry them); the sender issues the receiver a pull token. Returns it."""
    stage.register_own_key(sender, sender_key)
    stage.register_own_key(receiver, receiver_key)
    for home, other, key, url in ((sender, receiver, receiver_key, ""), (receiver, sender, sender_key, endpoint)):
        with home.db.transaction() as cur:
            registry.add_agency(cur, other.agency, other.agency_name, "", url)
            if registry.key_at(cur, other.agency, key.key_id, dt.datetime.now(dt.UTC)) is None:
                registry.add_key(cur, other.agency, key.key_id, key.public_bytes(),
                                 dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    with sender.db.transaction() as cur:  # a fresh token a run; the last run's is revoked
        cur.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = 'demo pull' AND revoked_at IS NULL")
        return accounts.create_token(cur, "demo pull", ["transfers:fetch"], 1, "cli:demo", receiver.agency)[1]


def _latest(sender: Services, file_number: str) -> stage.TransferRow | None:
    rows = stage.transfers(sender, sender=sender.agency, receiver=RECEIVER, file_number=file_number, limit=1)
    return rows[0] if rows and rows[0].status not in ("rejected", "cancelled", "expired") else None


def transfer_file(sender: Services, sender_key: Signer, receiver: Services, receiver_key: Signer,
                  file_number: str, instance: dg.DagsterInstance, resources: dict,
                  under_way: stage.TransferRow | None = None) -> str:
    """Request → package (its Dagster asset, with the sender's `resources`) → fetch, verify,
    receipt over HTTP → import; the transfer id. A transfer `under_way` (a demo stopped midway)
    goes on from its state. Raises what a step refuses."""
    with serving(create_app(sender)) as endpoint:
        token = introduce(sender, sender_key, receiver, receiver_key, endpoint)
        t = under_way or stage.request_transfer(sender, file_number, receiver.agency, "工作调动（演示）", "演示经办人",
                                                ACTOR)
        if t.status in ("requested", "packaged"):
            quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
            run_transfer(t.transfer_id, resources, instance, quiet)
        if stage.transfer(sender, t.transfer_id).status in ("available", "fetched"):
            client = PullClient(endpoint, token)
            (listing,) = [x for x in client.list() if x["transfer_id"] == t.transfer_id]
            got = receive.fetch_one(receiver, client, receiver_key, listing, ACTOR)
            if got.outcome != "received":
                raise IntegrityFailure(f"演示转递被拒收：{got.failed[0]['message_zh']}",
                                       f"the demo transfer was rejected: {got.failed[0]['message_en']}",
                                       item=t.transfer_id)
        receive.import_transfer(receiver, t.transfer_id, ACTOR)
    return t.transfer_id


def steps_of(sender: Services, receiver: Services, transfer_id: str) -> tuple[list[tuple[str, float]], float]:
    """Each step's seconds from the sender's transfer_events and the receiver's own rows."""
    with sender.db.transaction() as cur:
        cur.execute("SELECT status, min(at) AS at FROM transfer_events WHERE transfer_id = %s GROUP BY status",
                    (transfer_id,))
        at = {r["status"]: r["at"] for r in cur.fetchall()}
    with receiver.db.transaction() as cur:
        cur.execute("SELECT verified_at, imported_at FROM received_transfers WHERE transfer_id = %s"
                    " AND outcome = 'received'", (transfer_id,))
        r = cur.fetchone()
    marks = [("packaged", "package (Dagster asset)"), ("available", "sign the record"),
             ("fetched", "download (HTTP)"), ("verified", "verify (receiver)"), ("received", "receipt accepted"),
             ("imported", "import (receiver)")]
    at["verified"], at["imported"] = r["verified_at"], r["imported_at"]
    out, last = [], at["requested"]
    for status, name in marks:
        out.append((name, max(0.0, (at[status] - last).total_seconds())))
        last = max(last, at[status])
    return out, (at["imported"] - at["requested"]).total_seconds()


def show(sender: Services, sender_key: Signer, instance: LocalInstance, dagster: dg.DagsterInstance,
         file_number: str = DEMO_FILE) -> TransferShown:
    """The demo's transfer of `file_number` (the sender is the environment's installation)."""
    receiver = receiver_services(instance)
    receiver_key = Signer.from_env_or_file(Path(instance.home) / "keys" / f"signing-{RECEIVER}.pem")
    latest = _latest(sender, file_number)
    made = latest is None or latest.status != "received"
    if made:
        resources = {"services": ArchiveServicesResource(), "signer": SignerResource()}
        transfer_id = transfer_file(sender, sender_key, receiver, receiver_key, file_number, dagster, resources,
                                    latest)
    else:
        transfer_id = latest.transfer_id
        receive.import_transfer(receiver, transfer_id, ACTOR)  # nothing, if imported before
    t = stage.transfer(sender, transfer_id)
    steps, total = steps_of(sender, receiver, transfer_id)
    with receiver.db.transaction() as cur:
        cur.execute("SELECT f.name, p.ocr_text FROM personnel_files f JOIN materials m USING (file_number)"
                    " JOIN pages p USING (material_id) WHERE f.file_number = %s ORDER BY p.page_id", (file_number,))
        rows = cur.fetchall()
    name = rows[0]["name"]
    phrase = max((m for r in rows for m in _CJK_RUN.findall(r["ocr_text"])), key=len, default=name)
    by_name = search(receiver.db, name, Filters(agency=receiver.agency), actor=ACTOR,
                     id_hash_key=receiver.id_hash_key).hits
    by_phrase = search(receiver.db, phrase, Filters(agency=receiver.agency), actor=ACTOR,
                       id_hash_key=receiver.id_hash_key).hits
    return TransferShown(transfer_id, file_number, name, sender.agency, receiver.agency, t.status, steps, total,
                         t.package_bytes or 0, made, sum(1 for h in by_name if h.file_number == file_number),
                         phrase, sum(1 for h in by_phrase if h.file_number == file_number))
