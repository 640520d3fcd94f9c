"""A transfer of one 100-page personnel file, from request to verified receipt and import, beside
what `bagit.py` alone takes to make and validate the same bag, in the same run.

    .venv/bin/python benchmarks/transfer_bench.py [--pages 100] [--repeat 3] [--store s3,local]

Renders a file of --pages pages (sample_scans.generate, materials of one person), processes it
through the batch assets once (intake, OCR, index, archive: not timed), then --repeat times:
Guizhou's installation (its own PostgreSQL database and buckets: on a moto S3 server over HTTP,
or in a local folder as the demo keeps them)
takes a request for the file, its `transfer_package` Dagster asset builds, stores and signs the
bag, and a fresh Guangdong installation (its own database and buckets) lists, downloads over
the pull API (HTTP on loopback), verifies, receipts and imports it, the same functions
`archive fetch --import` calls. Each step's seconds come from the two sides' recorded
timestamps. Then the `bagit` library makes a bag of the same payload and validates it in this
process, as transfer/package.py and transfer/verify.py call it (sha256 only, one process, the
module already imported: no interpreter start-up on this side alone), and raw boto3 puts and gets
of the bag's objects show what the S3 endpoint alone costs. Target (issue 16): request → imported
<= 10 s.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bagit  # noqa: E402
import dagster as dg  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

from cli.demo_transfer import steps_of, transfer_file  # noqa: E402
from devservices.postgres import LocalPostgres  # noqa: E402
from devservices.s3 import MotoServer, free_port  # noqa: E402
from national_platform.cli import platform_database  # noqa: E402
from pipeline.resources import ArchiveServicesResource, SignerResource, archive_resources  # noqa: E402
from pipeline.runner import run_batch  # noqa: E402
from sample_scans.generate import generate  # noqa: E402
from settings import (
    Settings,  # noqa: E402
    StorageSettings,  # noqa: E402
)
from stages.services import Services  # noqa: E402
from stages.submit import submit_folder  # noqa: E402
from transfer.signing import Signer  # noqa: E402

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def one_file_batch(out: Path, pages: int) -> tuple[Path, str]:
    """A batch holding one person's file of exactly `pages` pages (rendered files' materials
    given to the first person, renumbered), and its file number."""
    batch = generate(out, files=max(1, pages // 6 + 2), seed=16, materials_per_file=6, name="GZ2026-B100")
    rows = list(csv.reader(io.StringIO((batch / "manifest.csv").read_text(encoding="utf-8"))))
    header, rows = rows[0], rows[1:]
    first = rows[0]
    seqs: dict[str, int] = {}
    kept, total = [], 0
    for r in rows:
        if total >= pages:
            break
        paths = r[10].split(";")[: pages - total]
        total += len(paths)
        seqs[r[3]] = seqs.get(r[3], 0) + 1
        kept.append([first[0], first[1], first[2], r[3], str(seqs[r[3]]), r[5], r[6], r[7], str(len(paths)), r[9],
                     ";".join(paths)])
    if total < pages:
        raise SystemExit(f"rendered only {total} pages")
    used = {p for r in kept for p in r[10].split(";")}
    for page in (batch / "pages").iterdir():
        if f"pages/{page.name}" not in used:
            page.unlink()
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *kept])
    (batch / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
    return batch, first[0]


def installation(pg: LocalPostgres, s3_url: str | None, name: str, settings: Settings,
                 folder: Path | None = None) -> Services:
    pg.ensure_database(name)
    services = Services.from_settings(StorageSettings(pg.url(name), s3_url, str(folder) if folder else None,
                                                      f"{name}-staging", f"{name}-archive"), settings=settings)
    services.prepare()
    return services


def bagit_alone(received_tar: Path, work: Path) -> tuple[float, float]:
    """Seconds the bagit library takes to make a bag of the same payload, then to validate it, called
    as the transfer calls it."""
    shutil.rmtree(work, ignore_errors=True)
    with tarfile.open(received_tar) as tar:
        tar.extractall(work / "unpacked", filter="data")
    (bag,) = list((work / "unpacked").iterdir())
    payload = work / "payload"
    shutil.move(str(bag / "data"), payload)
    t0 = time.perf_counter()
    bagit.make_bag(str(payload), {}, checksums=["sha256"])
    made = time.perf_counter() - t0
    t0 = time.perf_counter()
    bagit.Bag(str(payload)).validate(processes=1)
    return made, time.perf_counter() - t0


def raw_s3(s3_url: str, payload: Path) -> float:
    """Seconds raw boto3 takes to put and get every payload file once (8 threads), the floor the
    endpoint sets under import's verified writes."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    client = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
    client.create_bucket(Bucket="raw-floor")
    files = [p for p in payload.rglob("*") if p.is_file()]

    def one(p: Path) -> None:
        client.put_object(Bucket="raw-floor", Key=p.name, Body=p.read_bytes())
        client.get_object(Bucket="raw-floor", Key=p.name)["Body"].read()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - t0


def run_store(store: str, pg: LocalPostgres, s3_url: str, root: Path, args) -> list[tuple]:
    folder = root / f"objects-{store}" if store == "local" else None
    url = s3_url if store == "s3" else None
    gz = installation(pg, url, f"gz_{store}", Settings.from_env(), folder)
    key = Signer.generate()
    key_file = root / "gz.pem"
    key_file.write_bytes(key.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    batch, file_number = one_file_batch(root / f"scans-{store}", args.pages)
    resources = archive_resources(ArchiveServicesResource(database_url=gz.db.url, s3_endpoint_url=url,
                                                          object_root=str(folder) if folder else None,
                                                          staging_bucket=gz.staging_bucket,
                                                          archive_bucket=gz.archive_bucket),
                                  signer=SignerResource(key_file=str(key_file)))
    rows = []
    t0 = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        run_batch(submit_folder(batch, gz).batch_id, resources, instance, QUIET)
        print(f"[{store}] file {file_number}: {gz.db.count('pages')} pages processed by the batch assets in "
              f"{time.perf_counter() - t0:.0f} s (not timed below)", flush=True)
        for i in range(args.repeat):
            gd_settings = Settings(agency_code="440000", agency_name="广东省人才交流服务中心",
                                   id_hash_key=b"bench-id-hash-key-of-440000-0123456789",
                                   id_key_current="gd", id_keys={"gd": bytes(range(32))})
            gd = installation(pg, url, f"gd_{store}{i}", gd_settings, folder)
            t0 = time.perf_counter()
            pg.ensure_database(f"platform_{store}{i}")
            platform = platform_database(pg.url(f"platform_{store}{i}"))
            tid = transfer_file(gz, key, gd, Signer.generate(), file_number, instance, resources, platform)
            wall = time.perf_counter() - t0
            steps, total = steps_of(gz, gd, tid)
            tar = root / "received.tar"
            tar.write_bytes(gd.store.get(gd.archive_bucket, f"received/{tid}/{tid}.tar"))
            made, validated = bagit_alone(tar, root / "bagit")
            floor = raw_s3(s3_url, root / "bagit" / "payload" / "data") if store == "s3" else None
            rows.append((steps, total, wall, made, validated, tar.stat().st_size, floor))
    return rows


def report(store: str, rows: list[tuple], pages: int) -> None:
    names = [name for name, _ in rows[0][0]]
    print(f"\n[{store}] {len(rows)} transfers of a {pages}-page file ({rows[0][5] / 1e6:.1f} MB bag), seconds:")
    print(f"{'round':<6}" + "".join(f"{n.split(' (')[0][:12]:>13}" for n in names) + f"{'request→import':>16}"
          f"{'(wall)':>8}{'bagit make':>12}{'validate':>10}" + (f"{'raw S3 put+get':>16}" if rows[0][6] else ""))
    for i, (steps, total, wall, made, validated, _, floor) in enumerate(rows, 1):
        print(f"{i:<6}" + "".join(f"{s:>13.2f}" for _, s in steps) + f"{total:>16.2f}{wall:>8.2f}"
              f"{made:>12.2f}{validated:>10.2f}" + (f"{floor:>16.2f}" if floor else ""))
    med = statistics.median(r[1] for r in rows)
    bag = statistics.median(r[3] + r[4] for r in rows)
    print(f"[{store}] median request → verified receipt and import: {med:.2f} s (target <= 10 s: "
          f"{'met' if med <= 10 else 'NOT MET'}); the bagit library's make + validate of the same payload: {bag:.2f} s "
          f"({med / bag:.1f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--store", default="s3,local", help="comma list of s3 (moto over HTTP), local (a folder)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="transfer-bench-"))
    root.chmod(0o755)
    pg, s3 = LocalPostgres(root / "pg", free_port()), MotoServer()
    pg.start()
    s3.start()
    try:
        results = {store: run_store(store, pg, s3.url, root, args) for store in args.store.split(",")}
        for store, rows in results.items():
            report(store, rows, args.pages)
    finally:
        s3.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
