"""The pull API: how a receiving agency's own copy of this software fetches what is addressed to
it. An API token with scope `transfers:fetch`, issued to that agency, is the only way in.

    GET  /api/pull/v1/transfers                  what is addressed to me (available, fetched)
    GET  /api/pull/v1/transfers/{id}/record      the signed transfer record
    GET  /api/pull/v1/transfers/{id}/package     the BagIt package (tar), HTTP Range: a broken download resumes
    POST /api/pull/v1/transfers/{id}/receipt     the signed receipt, or a rejection naming each failed check
    GET  /api/pull/v1/openapi.json               this API described (OpenAPI 3)

A transfer addressed to another agency, one not yet available, and one that does not exist are
answered alike, 404, so a caller learns nothing of others' transfers; every call and every
refusal is in the audit trail.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from access.identity import Identity
from access.roles import Permission
from errors import NotFound
from stages import transfer as stage
from stages.services import Services
from web.auth import Auth

PREFIX = "/api/pull/v1"
SERVED = ("available", "fetched")             # what a receiver may list and fetch
VISIBLE = SERVED + ("received", "rejected")   # and whose record it may read again
STREAM_CHUNK = 1024 * 1024
MAX_RECEIPT_BYTES = 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class TransferListing(BaseModel):
    transfer_id: str
    file_number: str
    sending_agency: str
    status: str
    created_at: str
    expires_at: str | None
    package_bytes: int | None
    package_sha256: str | None
    record_url: str
    package_url: str
    receipt_url: str


class Listing(BaseModel):
    agency: str
    transfers: list[TransferListing]


class ReceiptAccepted(BaseModel):
    transfer_id: str
    status: str


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a single `Range: bytes=` header, None for the whole; ValueError when it
    cannot be satisfied (416)."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None  # a form we do not serve (several ranges): the whole, as RFC 9110 allows
    if not m.group(1):  # the last N bytes
        n = int(m.group(2))
        if n == 0:
            raise ValueError("empty suffix range")
        return max(0, size - n), size - 1
    first = int(m.group(1))
    last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if first >= size or last < first:
        raise ValueError("range not satisfiable")
    return first, last


def add_pull_routes(app: FastAPI, auth: Auth, svc: Callable[[], Services],
                    recorded: Callable[..., None]) -> None:
    fetcher = Depends(auth.need(Permission.TRANSFERS_FETCH))

    def addressed(request: Request, who: Identity, transfer_id: str, states: tuple[str, ...]) -> stage.TransferRow:
        """The transfer if it is addressed to the caller's agency and in `states`; else the
        same 404 as for one that does not exist."""
        try:
            t = stage.transfer(svc(), transfer_id, who.agency) if who.agency else None
        except NotFound:
            t = None
        if t is None or t.receiving_agency != who.agency or t.status not in states:
            raise auth.not_found(request, who)
        if t.status in SERVED and t.expires_at and t.expires_at <= dt.datetime.now(dt.UTC):
            raise auth.not_found(request, who)  # past its record's expiry: no longer on offer
        return t

    @app.get(f"{PREFIX}/transfers", tags=["pull"], response_model=Listing)
    def pull_list(request: Request, who: Identity = fetcher) -> dict:
        rows = stage.transfers(svc(), receiver=who.agency, status=SERVED) if who.agency else []
        recorded(who, "pull.list", detail={"transfers": len(rows)}, file_numbers=[t.file_number for t in rows])
        return {"agency": who.agency, "transfers": [{
            "transfer_id": t.transfer_id, "file_number": t.file_number, "sending_agency": t.sending_agency,
            "status": t.status, "created_at": t.created_at.isoformat(),
            "expires_at": t.expires_at.isoformat() if t.expires_at else None, "package_bytes": t.package_bytes,
            "package_sha256": t.package_sha256, "record_url": f"{PREFIX}/transfers/{t.transfer_id}/record",
            "package_url": f"{PREFIX}/transfers/{t.transfer_id}/package",
            "receipt_url": f"{PREFIX}/transfers/{t.transfer_id}/receipt"} for t in rows]}

    @app.get(f"{PREFIX}/transfers/{{transfer_id}}/record", tags=["pull"],
             responses={200: {"description": "the signed transfer record (RFC 8785 JSON with an Ed25519 signature)"}})
    def pull_record(request: Request, transfer_id: str, who: Identity = fetcher) -> Response:
        t = addressed(request, who, transfer_id, VISIBLE)
        record = stage.record_of(svc(), t.transfer_id)
        recorded(who, "pull.record", target=t.transfer_id, file_numbers=[t.file_number])
        return Response(json.dumps(record, ensure_ascii=False), media_type="application/json")

    @app.get(f"{PREFIX}/transfers/{{transfer_id}}/package", tags=["pull"], response_class=StreamingResponse,
             responses={200: {"content": {"application/x-tar": {}}, "description": "the whole package"},
                        206: {"description": "the bytes asked for with Range"},
                        416: {"description": "a range beyond the package"}})
    def pull_package(request: Request, transfer_id: str, who: Identity = fetcher) -> Response:
        t = addressed(request, who, transfer_id, SERVED)
        size, etag = t.package_bytes or 0, f'"{t.package_sha256}"'
        if_range = request.headers.get("if-range")
        try:
            wanted = byte_range(request.headers.get("range"), size) if not if_range or if_range == etag else None
        except ValueError:
            recorded(who, "pull.package", outcome="denied", target=t.transfer_id, file_numbers=[t.file_number],
                     detail={"range": request.headers.get("range"), "status": 416})
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        first, last = wanted or (0, size - 1)
        recorded(who, "pull.package", target=t.transfer_id, file_numbers=[t.file_number],
                 detail={"first": first, "last": last})
        services = svc()
        key = stage.package_key_of(services, t.transfer_id)

        def body() -> Iterator[bytes]:  # one read of the store, a chunk at a time: never the whole in memory
            yield from services.store.iter_range(services.archive_bucket, key, first, last, STREAM_CHUNK)
            if last == size - 1:  # the receiver now has all of it
                stage.served(services, t.transfer_id, who.actor)

        headers = {"Accept-Ranges": "bytes", "ETag": etag, "Content-Length": str(last - first + 1),
                   "Content-Disposition": f'attachment; filename="{t.transfer_id}.tar"'}
        if wanted:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return StreamingResponse(body(), status_code=206 if wanted else 200, media_type="application/x-tar",
                                 headers=headers)

    @app.post(f"{PREFIX}/transfers/{{transfer_id}}/receipt", tags=["pull"], response_model=ReceiptAccepted,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "type": "object", "description": "a receipt signed by the receiving agency (transfer/receipt.py)",
                  "required": ["schema", "receipt_id", "transfer_id", "record_id", "receiver", "outcome", "at",
                               "signature"]}}}}})
    async def pull_receipt(request: Request, transfer_id: str, who: Identity = fetcher) -> JSONResponse:
        t = await run_in_threadpool(addressed, request, who, transfer_id, VISIBLE)
        raw = b""
        async for part in request.stream():  # read up to the limit, never a body of gigabytes
            raw += part
            if len(raw) > MAX_RECEIPT_BYTES:
                await run_in_threadpool(recorded, who, "pull.receipt", outcome="denied", target=t.transfer_id,
                                        file_numbers=[t.file_number], detail={"status": 413})
                return JSONResponse({"detail": "回执过大 / receipt too large"}, status_code=413)
        try:
            receipt = json.loads(raw)
        except ValueError:
            receipt = None
        try:
            done = await run_in_threadpool(stage.accept_receipt, svc(), t.transfer_id,
                                           receipt if isinstance(receipt, dict) else {}, who.actor)
        except Exception:
            await run_in_threadpool(recorded, who, "pull.receipt", outcome="denied", target=t.transfer_id,
                                    file_numbers=[t.file_number])
            raise
        await run_in_threadpool(recorded, who, "pull.receipt", target=t.transfer_id, file_numbers=[t.file_number],
                                detail={"outcome": done.status})
        return JSONResponse({"transfer_id": done.transfer_id, "status": done.status})

    @app.get(f"{PREFIX}/openapi.json", include_in_schema=False)
    def pull_openapi() -> dict:
        routes = [r for r in app.routes if getattr(r, "path", "").startswith(PREFIX)]
        spec = get_openapi(title="人事档案转递拉取接口 / personnel-file transfer pull API", version="1",
                           description=__doc__, routes=routes)
        spec.setdefault("components", {})["securitySchemes"] = {
            "token": {"type": "http", "scheme": "bearer", "description": "an API token of scope transfers:fetch"}}
        spec["security"] = [{"token": []}]
        return spec

