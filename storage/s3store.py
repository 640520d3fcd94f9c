"""Any S3-compatible endpoint through boto3, streaming both ways.

Writes up to `multipart_threshold` go in one PUT; larger ones in parts of `part_size`, a few in
flight, so memory stays near (in_flight + 1) x part_size whatever the object's size. The sha256
is computed while the bytes go out and sent as the S3 checksum (x-amz-checksum-sha256), so an
endpoint that checks it refuses a damaged upload; a multipart upload whose bytes do not have the
sha256 the caller named is aborted before it is completed, so no partial or wrong object ever
becomes visible. An upload interrupted part way is resumed from the parts already there.

Requests botocore can repeat (5xx, SlowDown, resets, timeouts) are retried with its backoff and
jitter; a read that breaks inside a body is resumed from the byte it reached. What still fails
is ObjectStoreUnavailable: one sentence naming the endpoint, the operation and the object.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import BinaryIO

from storage.objects import CHUNK, IntegrityError, ObjectInfo, ObjectMissing, ObjectStoreUnavailable, missing

log = logging.getLogger(__name__)
PART = 16 * 1024**2          # a multipart part: S3 allows 10,000 parts, so up to 160 GB an object
IN_FLIGHT = 4                # parts uploading at once; with the one being read, ~80 MB held
BODY_RETRIES = 6             # a body read that breaks is resumed this many times in a row
LARGE_AT_ONCE = 2            # objects uploading in parts at once, per store
DAMAGED = ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "BadChecksum", "InvalidChecksum")
DAMAGED_TRIES = 3            # a request the endpoint found damaged on the way is sent again this often


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _body_errors() -> tuple[type[BaseException], ...]:
    import urllib3.exceptions
    from botocore.exceptions import BotoCoreError

    return (BotoCoreError, urllib3.exceptions.HTTPError, OSError)


class UploadGone(ObjectStoreUnavailable):
    """The multipart upload being written is no longer there (another writer of the key completed
    or aborted it)."""


class S3ObjectStore:
    """Credentials: explicit, else the usual AWS variables. `name` says which copy this is in
    messages (the primary store or a replica)."""

    def __init__(self, endpoint_url: str | None, region: str = "us-east-1", *, access_key: str | None = None,
                 secret_key: str | None = None, name: str = "", timeout: float = 60.0, attempts: int = 8,
                 part_size: int = PART, multipart_threshold: int = PART, write_once: str = "off",
                 lock_days: int = 0, verify: str = "digest",
                 hint: str = "ARCHIVE_S3_ENDPOINT_URL and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") -> None:
        import boto3
        from botocore.config import Config

        self.endpoint_url = endpoint_url
        self.description = f"S3 at {endpoint_url or 'AWS default endpoint'}" + (f" ({name})" if name else "")
        self.part_size = part_size
        self.multipart_threshold = max(multipart_threshold, 5 * 1024**2)
        self.write_once = write_once
        self.lock_days = lock_days
        self.verify = verify      # digest: the endpoint's digest of what it received; read-back: every write read back
        self.hint = hint          # the settings that name this store, for messages
        # Objects in parts, at most this many at once whatever the callers' threads: memory stays
        # near LARGE_AT_ONCE x (IN_FLIGHT + 1) parts however many large objects a batch holds.
        self._large = threading.BoundedSemaphore(LARGE_AT_ONCE)
        # We send our own sha256 checksum; botocore's default CRC32 on top would cost a second pass.
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(retries={"max_attempts": attempts, "mode": "standard"}, connect_timeout=5,
                          read_timeout=timeout, max_pool_connections=32, s3={"addressing_style": "path"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))
        # Completing a multipart upload joins its parts: minutes for an object of gigabytes
        # (S3 keeps the connection alive meanwhile), so it gets a client of its own that waits.
        self.slow_client = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(retries={"max_attempts": attempts, "mode": "standard"}, connect_timeout=5,
                          read_timeout=max(timeout, 900), s3={"addressing_style": "path"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))

    # -- errors ---------------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException, what: str = "") -> ObjectStoreUnavailable:
        cause = _cause(exc)
        about = f" with {what}" if what else ""
        return ObjectStoreUnavailable(
            f"对象存储 {self.description} 不可用（{cause}），请检查 {self.hint}；稍后重新运行即从中断处继续",
            f"the object store {self.description} failed{about} ({cause}) after retries: check {self.hint}, "
            "then run again to go on from where this run stopped", item=what or None)

    def _call(self, what: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(DAMAGED_TRIES):
            try:
                return fn(**kwargs)
            except ClientError as exc:
                # the endpoint found our Content-MD5 or checksum wrong: bytes damaged on the way; the
                # body is in memory, so it is sent again
                if _code(exc) in DAMAGED and attempt < DAMAGED_TRIES - 1:
                    continue
                raise self._mapped(exc, what, kwargs) from exc
            except BotoCoreError as exc:
                raise self._unavailable(exc, what) from exc
        raise AssertionError("unreachable")

    def _mapped(self, exc, what: str, kwargs: dict) -> Exception:
        """A ClientError as what it means here."""
        if _code(exc) in ("404", "NoSuchKey", "NotFound") and "Key" in kwargs:
            return missing(self.description, kwargs["Bucket"], kwargs["Key"])
        if _code(exc) in ("InvalidRange", "416"):   # shorter than it should be: not the store's fault
            return IntegrityError(f"对象 {what} 比记录的短", f"{what} in {self.description} is shorter than "
                                  "recorded", item=kwargs.get("Key"))
        if _code(exc) == "NoSuchUpload":
            return UploadGone(f"{what} 的分段上传已不存在", f"the multipart upload of {what} is gone "
                              f"({self.description})", item=kwargs.get("Key"))
        return self._unavailable(exc, what)

    # -- buckets --------------------------------------------------------------------------------

    def ensure_bucket(self, bucket: str, protect: bool = False) -> None:
        """Creates the bucket if missing; `protect`: turn on the configured write-once protection
        (versioning, or object lock in compliance mode for `lock_days`) where the endpoint has it."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=bucket)
            exists = True
        except ClientError as exc:
            if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise self._unavailable(exc, bucket) from exc
            exists = False
        except BotoCoreError as exc:
            raise self._unavailable(exc, bucket) from exc
        lock = protect and self.write_once == "object-lock"
        if not exists:
            try:
                self.client.create_bucket(Bucket=bucket, **({"ObjectLockEnabledForBucket": True} if lock else {}))
            except ClientError as exc:
                if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise self._unavailable(exc, bucket) from exc
            # parts of an upload nobody resumed within a week (its writer gone for good) are freed;
            # a role not allowed to set it leaves that to the store's own policy
            try:
                self._call(bucket, self.client.put_bucket_lifecycle_configuration, Bucket=bucket,
                           LifecycleConfiguration={"Rules": [{
                               "ID": "abort-incomplete-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
                               "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]})
            except ObjectStoreUnavailable as exc:
                log.warning("no lifecycle rule on %s: %s", bucket, exc.message_en)
        if protect and self.write_once in ("versioning", "object-lock"):
            self._call(bucket, self.client.put_bucket_versioning, Bucket=bucket,
                       VersioningConfiguration={"Status": "Enabled"})
        if lock and self.lock_days:
            self._call(bucket, self.client.put_object_lock_configuration, Bucket=bucket, ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": self.lock_days}}})

    # -- writes ---------------------------------------------------------------------------------

    def put(self, bucket: str, key: str, data: bytes, sha256: str,
            content_type: str = "application/octet-stream") -> bool:
        """True when the endpoint's digest of what it received is ours (see `confirmed`)."""
        digest = hashlib.sha256(data).digest()
        if digest.hex() != sha256:
            raise IntegrityError(f"写入 {bucket}/{key} 的内容与其摘要不符",
                                 f"{bucket}/{key}: the bytes given do not have sha256 {sha256}", item=key)
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        r = self._call(f"{bucket}/{key}", self.client.put_object, Bucket=bucket, Key=key, Body=data,
                       ContentType=content_type, Metadata={"sha256": sha256}, ChecksumSHA256=b64(digest),
                       ContentMD5=b64(md5))
        return self._confirmed(r.get("ETag"), md5.hex())

    def _confirmed(self, etag: str | None, expected: str) -> bool:
        """With verify="digest", a write is confirmed by the endpoint's own digest of the bytes it
        received: its ETag, the MD5 of a single PUT and of each part on S3 and its kin, equal to
        ours (it also refused the request had the Content-MD5 we sent not matched). An ETag of
        another kind (SSE-KMS) confirms nothing, and the caller reads the object back."""
        return self.verify == "digest" and (etag or "").strip('"') == expected

    def put_file(self, bucket: str, key: str, path: Path, sha256: str,
                 content_type: str = "application/octet-stream") -> bool:
        with open(path, "rb") as fh:
            return self.put_stream(bucket, key, fh, sha256, Path(path).stat().st_size, content_type)

    def put_stream(self, bucket: str, key: str, source: BinaryIO, sha256: str, size: int,
                   content_type: str = "application/octet-stream") -> bool:
        """`size` bytes read from `source` stored under `key`; IntegrityError (and nothing
        stored) unless they have `sha256`. True when the endpoint confirmed what it received."""
        if size <= self.multipart_threshold:
            data = _read_exactly(source, size, f"{bucket}/{key}")
            return self.put(bucket, key, data, sha256, content_type)
        with self._large:
            return self._multipart(bucket, key, source, sha256, size, content_type)

    def _open_upload(self, bucket: str, key: str, sha256: str, content_type: str) -> tuple[str, dict[int, dict]]:
        """An upload of this key left by an interrupted run (its parts kept), else a new one.

        Only a content-addressed key (one ending in its sha256) is resumed: the upload's metadata
        was fixed when it began, and for any other key it may describe other bytes, so such an
        upload is aborted and begun again."""
        where = f"{bucket}/{key}"
        listed = self._call(where, self.client.list_multipart_uploads, Bucket=bucket, Prefix=key)
        for up in listed.get("Uploads", []):
            if up["Key"] != key:
                continue
            if not key.endswith(sha256) or up.get("ChecksumAlgorithm") not in (None, "SHA256"):
                self._call(where, self.client.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=up["UploadId"])
                continue
            try:
                parts = self._call(where, self.client.list_parts, Bucket=bucket, Key=key, UploadId=up["UploadId"])
            except Exception:  # noqa: BLE001 - gone meanwhile: start afresh
                continue
            return up["UploadId"], {p["PartNumber"]: p for p in parts.get("Parts", [])}
        made = self._call(where, self.client.create_multipart_upload, Bucket=bucket, Key=key,
                          ContentType=content_type, Metadata={"sha256": sha256}, ChecksumAlgorithm="SHA256")
        return made["UploadId"], {}

    def _multipart(self, bucket: str, key: str, source: BinaryIO, sha256: str, size: int,
                   content_type: str) -> bool:
        where = f"{bucket}/{key}"
        upload_id, have = self._open_upload(bucket, key, sha256, content_type)
        whole = hashlib.sha256()
        done: dict[int, dict] = {}
        md5s: dict[int, bytes] = {}
        confirmed = True
        pending: set[Future] = set()
        left, number = size, 0

        def send(n: int, data: bytes, digest: bytes, md5: bytes) -> tuple[int, dict]:
            r = self._call(f"{where} part {n}", self.client.upload_part, Bucket=bucket, Key=key,
                           UploadId=upload_id, PartNumber=n, Body=data, ChecksumSHA256=b64(digest),
                           ContentMD5=b64(md5))
            return n, {"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": b64(digest)}

        def finished(f: Future) -> None:
            nonlocal confirmed
            n, part = f.result()
            done[n] = part
            confirmed = confirmed and self._confirmed(part["ETag"], md5s[n].hex())

        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            try:
                while left > 0:
                    number += 1
                    data = _read_exactly(source, min(self.part_size, left), where)
                    left -= len(data)
                    whole.update(data)
                    digest = hashlib.sha256(data).digest()
                    md5s[number] = hashlib.md5(data, usedforsecurity=False).digest()
                    old = have.get(number)
                    if old and old.get("Size") == len(data) and _same_part(old, md5s[number], digest):
                        done[number] = {"PartNumber": number, "ETag": old["ETag"], "ChecksumSHA256": b64(digest)}
                        confirmed = confirmed and self._confirmed(old["ETag"], md5s[number].hex())
                        continue   # uploaded by the interrupted run, and the same bytes
                    while len(pending) >= IN_FLIGHT:
                        ready, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in ready:
                            finished(f)
                    pending.add(pool.submit(send, number, data, digest, md5s[number]))
                    del data
                for f in pending:
                    finished(f)
            except UploadGone:       # another writer of the same key completed it and cleared ours
                for f in pending:
                    f.cancel()
                wait(pending)
                info = self.head(bucket, key)
                if info is None or info.bytes != size or info.sha256 != sha256:
                    raise self._unavailable(OSError("the upload was cleared and no object is there"),
                                            where) from None
                return False     # theirs: read back by the caller
            except IntegrityError:   # the source is not what it should be: its parts are worth nothing
                for f in pending:
                    f.cancel()
                wait(pending)
                self._call(where, self.client.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id)
                raise
            except BaseException:    # the store failing, or a kill: the parts stay for the resume
                for f in pending:
                    f.cancel()
                raise
        if whole.hexdigest() != sha256:
            self._call(where, self.client.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id)
            raise IntegrityError(f"写入 {where} 的内容与其摘要不符，上传已放弃",
                                 f"{where}: the bytes streamed have sha256 {whole.hexdigest()}, not {sha256}; "
                                 "the upload was aborted", item=key)
        # the whole object's ETag on S3: the MD5 of its parts' MD5s, and their number
        whole_etag = hashlib.md5(b"".join(md5s[n] for n in sorted(done)), usedforsecurity=False).hexdigest() + \
            f"-{len(done)}"
        try:
            r = self._call(where, self.slow_client.complete_multipart_upload, Bucket=bucket, Key=key,
                           UploadId=upload_id, MultipartUpload={"Parts": [done[n] for n in sorted(done)]})
        except (ObjectStoreUnavailable, UploadGone):
            # a completion answered late (or its answer lost), or another writer of the same key
            # done first: an object of our size and sha256 may be there, but an older one, damaged
            # since, looks the same, so it is never taken as confirmed: the caller reads it back
            info = self.head(bucket, key)
            if info is None or info.bytes != size or info.sha256 != sha256:
                raise
            return False
        self._abort_others(bucket, key, upload_id)
        return confirmed and self._confirmed(r.get("ETag"), whole_etag)

    def _abort_others(self, bucket: str, key: str, done: str) -> None:
        """Uploads of this key other than the one just completed: a create retried after its first
        answer was lost leaves one behind, holding parts nobody will complete."""
        where = f"{bucket}/{key}"
        listed = self._call(where, self.client.list_multipart_uploads, Bucket=bucket, Prefix=key)
        for up in listed.get("Uploads", []):
            if up["Key"] == key and up["UploadId"] != done:
                try:
                    self._call(where, self.client.abort_multipart_upload, Bucket=bucket, Key=key,
                               UploadId=up["UploadId"])
                except ObjectStoreUnavailable:
                    pass   # gone meanwhile, or the store busy: the bucket's lifecycle rule takes it

    def delete(self, bucket: str, key: str) -> None:
        self._call(f"{bucket}/{key}", self.client.delete_object, Bucket=bucket, Key=key)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, bucket: str, key: str) -> bytes:
        info = self.head(bucket, key)
        if info is None:
            raise missing(self.description, bucket, key)
        return b"".join(self.iter_range(bucket, key, 0, info.bytes - 1, CHUNK)) if info.bytes else b""

    def iter_range(self, bucket: str, key: str, start: int, end: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        """Bytes start..end (inclusive) a chunk at a time; a body that breaks part way is asked
        for again from the first byte not yet yielded."""
        errors = _body_errors()
        where, pos, failures, etag = f"{bucket}/{key}", start, 0, None
        while pos <= end:
            try:
                extra = {"IfMatch": etag} if etag else {}   # a resumed read is of the same object, or fails
                got = self._call(where, self.client.get_object, Bucket=bucket, Key=key, Range=f"bytes={pos}-{end}",
                                 **extra)
                etag = etag or got.get("ETag")
                first, _, total = str(got.get("ContentRange", "")).removeprefix("bytes ").partition("-")
                if not first.isdigit() or int(first) != pos:   # a range ignored: never bytes twice
                    got["Body"].close()
                    raise OSError(f"asked for bytes from {pos}, answered {got.get('ContentRange')!r}")
                total = total.rpartition("/")[2]
                if total.isdigit():
                    end = min(end, int(total) - 1)   # asked past the object's end: it is shorter
                body = got["Body"]
                try:
                    for data in body.iter_chunks(chunk):
                        pos += len(data)
                        failures = 0
                        yield data
                finally:
                    body.close()
                if pos <= end:
                    raise OSError(f"body ended at byte {pos} of {end + 1}")
            except ObjectStoreUnavailable:
                raise
            except errors as exc:
                failures += 1
                if failures > BODY_RETRIES:
                    raise self._unavailable(exc, where) from exc
                time.sleep(min(20.0, 0.2 * 2 ** failures) * random.uniform(0.5, 1.0))

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            r = self._call(f"{bucket}/{key}", self.client.head_object, Bucket=bucket, Key=key)
        except ObjectMissing:
            return None
        return ObjectInfo(r["ContentLength"], r.get("Metadata", {}).get("sha256"), r.get("ETag", "").strip('"'))

    def keys(self, bucket: str, prefix: str = "") -> Iterator[tuple[str, int]]:
        """(key, bytes) of every object under `prefix`, in key order."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        try:
            for page in pages:
                for o in page.get("Contents", []):
                    yield o["Key"], o["Size"]
        except Exception as exc:  # noqa: BLE001 - botocore's, mapped to one sentence
            from botocore.exceptions import BotoCoreError, ClientError

            if isinstance(exc, BotoCoreError | ClientError):
                raise self._unavailable(exc, f"{bucket}/{prefix}*") from exc
            raise

    def count(self, bucket: str, prefix: str = "") -> int:
        return sum(1 for _ in self.keys(bucket, prefix))


def _same_part(listed: dict, md5: bytes, digest: bytes) -> bool:
    """A part an interrupted upload left has these bytes: by its sha256 where the endpoint lists
    it, else by its ETag (the part's MD5 on S3 without KMS)."""
    if listed.get("ChecksumSHA256"):
        return listed["ChecksumSHA256"] == b64(digest)
    return listed.get("ETag", "").strip('"') == md5.hex()


def _cause(exc: BaseException) -> str:
    """A few words for what went wrong: the status and code of an answer, or the kind of failure."""
    from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"HTTP {status} {_code(exc)}".strip() if status else _code(exc) or "refused"
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return "cannot connect"
    if isinstance(exc, ReadTimeoutError):
        return "no answer in time"
    return type(exc).__name__


def _code(exc) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _read_exactly(source: BinaryIO, n: int, where: str) -> bytes:
    parts, got = [], 0
    while got < n and (piece := source.read(n - got)):
        parts.append(piece)
        got += len(piece)
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if len(data) != n:
        raise IntegrityError(f"{where} 的来源比申明的短", f"{where}: the source ended after {len(data)} of {n} bytes",
                             item=where)
    return data
