"""Preservation writes against raw boto3, on the same S3 endpoint in one run.

    python benchmarks/storage_bench.py [--pages 400] [--large 3] [--large-mb 300] [--rounds 3]
                                       [--endpoint URL]

The same files (page-sized scans and a few objects of hundreds of MB) are stored
  raw:   boto3 `upload_file` (its default transfer manager) in a pool of THREADS threads;
  ours:  storage/ `put_file_verified` in a pool of the same size, as the archive stage stores:
         streamed, sha256 computed while sending and sent as the checksum, and verified by the
         endpoint's own MD5 of what it received (ARCHIVE_S3_VERIFY=digest, the default; a copy
         whose digest differs is read back);
  read-back: the same with ARCHIVE_S3_VERIFY=read-back, every object read back and hashed;
each side into a fresh bucket, in turn for --rounds rounds (each round started by another side),
after one untimed warm-up of each.
Prints MB/s of each side per round and the ratios to raw of the medians. Without --endpoint a
moto server is started on loopback for the run (and stopped).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from storage.objects import content_key, put_file_verified  # noqa: E402
from storage.s3store import S3ObjectStore  # noqa: E402

THREADS = 8   # the archive stage's STORERS


def make_files(root: Path, pages: int, large: int, large_mb: int) -> list[tuple[Path, str, int]]:
    rnd = random.Random(31)
    out = []
    for i in range(pages):
        data = rnd.randbytes(rnd.randint(80_000, 400_000))   # a page scan: 80-400 KB
        out.append((root / f"page-{i}", data))
    for i in range(large):
        path = root / f"large-{i}"
        h = hashlib.sha256()
        with open(path, "wb") as fh:
            for _ in range(large_mb):
                chunk = rnd.randbytes(1024**2)
                h.update(chunk)
                fh.write(chunk)
        out.append((path, None))
    files = []
    for path, data in out:
        if data is not None:
            path.write_bytes(data)
            files.append((path, hashlib.sha256(data).hexdigest(), len(data)))
        else:
            files.append((path, _sha(path), path.stat().st_size))
    return files


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def run_raw(client, bucket: str, files) -> float:
    client.create_bucket(Bucket=bucket)
    t = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda f: client.upload_file(str(f[0]), bucket, content_key(f[1])), files))
    return time.perf_counter() - t


def run_ours(store: S3ObjectStore, bucket: str, files) -> float:
    store.ensure_bucket(bucket)
    t = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda f: put_file_verified(store, bucket, content_key(f[1]), f[0], f[1]), files))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=400)
    ap.add_argument("--large", type=int, default=3)
    ap.add_argument("--large-mb", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--endpoint")
    args = ap.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    server = None
    if not args.endpoint:
        from devservices.s3 import MotoServer

        server = MotoServer()
        server.start()
        args.endpoint = server.url
    try:
        import boto3
        from botocore.config import Config

        client = boto3.client("s3", endpoint_url=args.endpoint, region_name="us-east-1",
                              config=Config(max_pool_connections=32, s3={"addressing_style": "path"}))
        store = S3ObjectStore(args.endpoint)
        reading = S3ObjectStore(args.endpoint, verify="read-back")
        with tempfile.TemporaryDirectory(prefix="storage-bench-") as tmp:
            files = make_files(Path(tmp), args.pages, args.large, args.large_mb)
            total = sum(f[2] for f in files)
            print(f"{len(files)} objects, {total / 1e6:.0f} MB ({args.pages} pages of 80-400 KB, {args.large} x "
                  f"{args.large_mb} MB); endpoint {args.endpoint}; {THREADS} threads each side", flush=True)
            warm = files[:20]
            run_raw(client, "warm-raw", warm)
            run_ours(store, "warm-ours", warm)
            run_ours(reading, "warm-read", warm)
            raw_s, ours_s, read_s = [], [], []
            for r in range(args.rounds):
                sides = [(raw_s, lambda r=r: run_raw(client, f"raw-{r}", files)),
                         (ours_s, lambda r=r: run_ours(store, f"ours-{r}", files)),
                         (read_s, lambda r=r: run_ours(reading, f"read-{r}", files))]
                for times, run in sides[r % 3:] + sides[:r % 3]:  # each side first in turn, none always after another
                    times.append(run())
                print(f"round {r + 1}: raw upload_file {total / 1e6 / raw_s[-1]:.1f} MB/s, ours (verified by "
                      f"digest) {total / 1e6 / ours_s[-1]:.1f} MB/s, ours (read back) {total / 1e6 / read_s[-1]:.1f}"
                      " MB/s", flush=True)
                for b in (f"raw-{r}", f"ours-{r}", f"read-{r}"):   # free the endpoint's memory for the next round
                    for key, _ in store.keys(b):
                        store.delete(b, key)
            raw_m = statistics.median(raw_s)
            print(f"ours / raw boto3 upload_file: {raw_m / statistics.median(ours_s):.2f} (verified by the "
                  f"endpoint's digest, the default; target >= 0.90); read back: "
                  f"{raw_m / statistics.median(read_s):.2f} (medians of {args.rounds} rounds)")
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
