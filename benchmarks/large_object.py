"""A large object through the S3 store: streamed up in parts, read back and hashed, with the
process's peak memory printed. `python benchmarks/large_object.py ENDPOINT [GIB]` (default 6 GiB;
the object is generated as it is sent, so the disk holds none of it).

Prints one JSON line: bytes, seconds up and down, MB/s each way, peak RSS in MB."""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from storage.objects import verify_stored  # noqa: E402
from storage.s3store import S3ObjectStore  # noqa: E402

BLOCK = 1 << 20


class Generated:
    """`size` bytes, the same each time: a random MiB with each copy's number written into it."""

    def __init__(self, size: int, seed: int = 6) -> None:
        self.size, self.pos = size, 0
        self.block = bytearray(random.Random(seed).randbytes(BLOCK))

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        out = bytearray()
        while len(out) < n:
            index, offset = divmod(self.pos, BLOCK)
            self.block[:8] = index.to_bytes(8, "big")
            piece = self.block[offset:offset + min(BLOCK - offset, n - len(out))]
            out += piece
            self.pos += len(piece)
        return bytes(out)


def peak_rss_kb() -> int:
    """This process's peak resident memory since it began running this program: VmHWM, which a
    new program image starts afresh (getrusage's ru_maxrss keeps the peak of the process that
    forked us when that was higher, such as a test runner holding OCR models)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def digest_of(size: int) -> str:
    h, src = hashlib.sha256(), Generated(size)
    while chunk := src.read(16 * BLOCK):
        h.update(chunk)
    return h.hexdigest()


def main() -> None:
    endpoint = sys.argv[1]
    size = int(float(sys.argv[2] if len(sys.argv) > 2 else 6) * 1024**3)
    store = S3ObjectStore(endpoint, name="large-object probe")
    store.ensure_bucket("large-objects")
    sha = digest_of(size)
    t0 = time.perf_counter()
    store.put_stream("large-objects", "big.bin", Generated(size), sha, size)
    t1 = time.perf_counter()
    verify_stored(store, "large-objects", "big.bin", sha, size)   # read back in chunks, hashed
    t2 = time.perf_counter()
    store.delete("large-objects", "big.bin")
    peak_mb = peak_rss_kb() / 1024
    print(json.dumps({"bytes": size, "sha256": sha, "up_s": round(t1 - t0, 1), "down_s": round(t2 - t1, 1),
                      "up_mb_s": round(size / 1e6 / (t1 - t0), 1), "down_mb_s": round(size / 1e6 / (t2 - t1), 1),
                      "peak_rss_mb": round(peak_mb, 1)}))


if __name__ == "__main__":
    main()
