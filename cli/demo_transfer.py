"""The demo's second agency: Guangdong's own installation of this software beside Guizhou's
(its own database, buckets, signing key and ID keys, in the demo's PostgreSQL and store), the
in-project national platform between them (its own database), and one transfer: requested,
packaged by its Dagster asset, each step reported to the platform through Guizhou's outbox;
Guangdong learns from the platform's feed that it waits, fetches it over Guizhou's pull API,
verifies, receipts and imports it, then searches for it; the receipt reaches the platform too.

Each step's time is read from the two sides' own timestamps, so a demo run after the first,
which finds the transfer done (a file has one transfer under way or done, not one a run),
shows the same steps as the run that made it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from access import accounts
from access.audit import Actor
from crossregion import feed, outbox
from crossregion.client import PlatformClient
from devservices.instance import LocalInstance
from errors import IntegrityFailure, NotReady
from national_platform import service as platform_service
from national_platform.api import create_platform_app
from national_platform.cli import DATABASE as PLATFORM_DATABASE
from national_platform.cli import platform_database
from pipeline.resources import archive_resources
from pipeline.runner import run_transfer
from search.query import Filters, search
from settings import Settings, StorageSettings
from stages import receive
from stages import transfer as stage
from stages.services import Services
from storage.db import Database
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
    platform: list[tuple[str, float]]   # (status, seconds from the step to its arrival at the platform)

    def lines(self) -> list[str]:
        when = "now" if self.made_now else "in an earlier demo run; its steps as recorded"
        out = [f"  transfer / 转递     {self.file_number} {self.person}: {self.sender} → {self.receiver} "
               f"{RECEIVER_NAME}, {self.status} ({when})",
               f"                      transfer {self.transfer_id}, package {self.package_bytes / 1e6:.1f} MB "
               "(BagIt), fetched over the pull API"]
        out += [f"    {name:<22} {seconds:6.2f} s" for name, seconds in self.steps]
        out.append(f"    {'request → imported':<22} {self.total:6.2f} s")
        out.append("  national platform / 全国平台  each step's record, from the step to its arrival "
                   "(Guangdong learned of the transfer from its feed):")
        out.append("    " + ", ".join(f"{status} +{seconds:.2f} s" for status, seconds in self.platform))
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


def platform_of(instance: LocalInstance) -> Database:
    """The in-project national platform's database in the demo's cluster."""
    instance.postgres.ensure_database(PLATFORM_DATABASE)
    return platform_database(instance.postgres.url(PLATFORM_DATABASE))


def join_platform(platform: Database, members: list[tuple[Services, Signer]]) -> dict[str, str]:
    """Each agency and its key in the platform's registry (as the platform's operators register
    them) and a fresh token for each, the last run's revoked. Returns the tokens by agency."""
    tokens = {}
    with platform.transaction() as cur:
        for services, key in members:
            registry.add_agency(cur, services.agency, services.agency_name)
            if registry.key_at(cur, services.agency, key.key_id, dt.datetime.now(dt.UTC)) is None:
                registry.add_key(cur, services.agency, key.key_id, key.public_bytes(),
                                 dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
            platform_service.revoke_tokens(cur, services.agency)
            tokens[services.agency] = platform_service.issue_token(cur, services.agency, "demo")
    return tokens


def _discover(receiver: Services, client: PlatformClient, transfer_id: str, seconds: float = 30) -> feed.Waiting:
    """The transfer, once the platform's feed says it waits for the receiver."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for w in feed.read(receiver, client, wait=2).waiting:
            if w.transfer_id == transfer_id:
                return w
    raise NotReady(f"全国平台在 {seconds:.0f} 秒内未通知转递 {transfer_id}",
                   f"the national platform did not list transfer {transfer_id} within {seconds:.0f} s",
                   item=transfer_id)


def _delivered(sender: Services, transfer_id: str, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with sender.db.transaction() as cur:
            cur.execute("SELECT count(*) FILTER (WHERE state <> 'delivered') AS left FROM platform_outbox"
                        " WHERE transfer_id = %s", (transfer_id,))
            if cur.fetchone()["left"] == 0:
                return
        time.sleep(0.05)
    raise NotReady(f"转递 {transfer_id} 的记录未能报送全国平台（archive platform status）",
                   f"the records of transfer {transfer_id} did not reach the national platform "
                   "(archive platform status)", item=transfer_id)


def platform_steps(platform: Database, transfer_id: str) -> list[tuple[str, float]]:
    with platform.transaction() as cur:
        cur.execute("SELECT status, received_at, body->>'changed_at' AS changed FROM records"
                    " WHERE transfer_id = %s ORDER BY sequence", (transfer_id,))
        return [(r["status"], (r["received_at"] - dt.datetime.fromisoformat(r["changed"])).total_seconds())
                for r in cur.fetchall()]


def _latest(sender: Services, file_number: str) -> stage.TransferRow | None:
    rows = stage.transfers(sender, sender=sender.agency, receiver=RECEIVER, file_number=file_number, limit=1)
    return rows[0] if rows and rows[0].status not in ("rejected", "cancelled", "expired") else None


def transfer_file(sender: Services, sender_key: Signer, receiver: Services, receiver_key: Signer,
                  file_number: str, instance: dg.DagsterInstance, resources: dict, platform: Database,
                  under_way: stage.TransferRow | None = None) -> str:
    """Request → package (its Dagster asset, with the sender's `resources`), each step's record
    delivered to the national `platform` by the sender's outbox → the receiver discovers it in
    the platform's feed → fetch, verify, receipt over the sender's pull API → import; the
    transfer id once the receipt's record is at the platform too. A transfer `under_way` (a demo
    stopped midway) goes on from its state. Raises what a step refuses."""
    stop = threading.Event()
    with serving(create_app(sender)) as endpoint, serving(create_platform_app(platform)) as platform_url:
        token = introduce(sender, sender_key, receiver, receiver_key, endpoint)
        tokens = join_platform(platform, [(sender, sender_key), (receiver, receiver_key)])
        to_platform = PlatformClient(platform_url, tokens[sender.agency])
        deliverer = threading.Thread(target=outbox.follow, name="outbox", args=(sender.db, to_platform, sender_key),
                                     kwargs={"retry_seconds": 0.5, "stop": stop, "workers": 2}, daemon=True)
        deliverer.start()
        try:
            t = under_way or stage.request_transfer(sender, file_number, receiver.agency, "工作调动（演示）",
                                                    "演示经办人", ACTOR)
            if t.status in ("requested", "packaged"):
                quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
                run_transfer(t.transfer_id, resources, instance, quiet)
            if stage.transfer(sender, t.transfer_id).status in ("available", "fetched"):
                waiting = _discover(receiver, PlatformClient(platform_url, tokens[receiver.agency]), t.transfer_id)
                got = receive.fetch_one(receiver, PullClient(endpoint, token), receiver_key, waiting.listing(), ACTOR)
                if got.outcome != "received":
                    raise IntegrityFailure(f"演示转递被拒收：{got.failed[0]['message_zh']}",
                                           f"the demo transfer was rejected: {got.failed[0]['message_en']}",
                                           item=t.transfer_id)
            receive.import_transfer(receiver, t.transfer_id, ACTOR)
            _delivered(sender, t.transfer_id)
            feed.read(receiver, PlatformClient(platform_url, tokens[receiver.agency]))  # the receipt, as it hears it
        finally:
            stop.set()
            deliverer.join(5)
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
    receiver_key = Signer.from_pem_or_file("", Path(instance.home) / "keys" / f"signing-{RECEIVER}.pem")
    latest = _latest(sender, file_number)
    made = latest is None or latest.status != "received"
    platform = platform_of(instance)
    if made:
        resources = archive_resources()
        transfer_id = transfer_file(sender, sender_key, receiver, receiver_key, file_number, dagster, resources,
                                    platform, latest)
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
                         phrase, sum(1 for h in by_phrase if h.file_number == file_number),
                         platform_steps(platform, transfer_id))
