"""The platform's HTTP API (docs/national-platform.md); every agency authenticates with the token
the platform issued it.

    POST /api/v1/records                  a signed record (header Idempotency-Key = its record_id):
                                          201 stored, 200 a duplicate, 4xx refused with a reason code
    GET  /api/v1/feed?after=N&wait=S      records addressed to the caller or sent by it, after N,
                                          waiting up to S seconds (at most 30) for one to come
    GET  /api/v1/transfers/{id}/records   one transfer's records, to its sender or receiver
    GET  /api/v1/health
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from national_platform import service
from national_platform.service import Refused
from storage.db import Database

MAX_WAIT = 30.0
POLL = 0.05   # seconds between looks while a reader waits


def create_platform_app(db: Database) -> FastAPI:
    app = FastAPI(title="全国流动人员人事档案跨地区管理服务平台 (in-project)", version="1",
                  docs_url=None, redoc_url=None)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    async def caller(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        agency = await run_in_threadpool(service.token_agency, db, token.strip() if scheme.lower() == "bearer" else "")
        if agency is None:
            await run_in_threadpool(service.logged, db, None, f"{request.method} {request.url.path}", 401)
            raise Refused("unauthorized", 401, "令牌无效或已撤销", "the token is missing, unknown or revoked")
        return agency

    who = Depends(caller)

    @app.get("/api/v1/health")
    def health() -> dict:
        return {"ok": True}

    @app.post("/api/v1/records", status_code=201)
    async def post_record(request: Request, agency: str = who) -> JSONResponse:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > service.MAX_RECORD_BYTES:
                break
        try:
            got = await run_in_threadpool(service.accept, db, agency, raw, request.headers.get("idempotency-key"))
        except Refused as exc:
            await run_in_threadpool(service.logged, db, agency, "record.post", exc.http_status, exc.code)
            raise
        return JSONResponse(got.to_dict(), status_code=200 if got.duplicate else 201)

    @app.get("/api/v1/feed")
    async def get_feed(after: Annotated[int, Query(ge=0)] = 0, wait: Annotated[float, Query(ge=0)] = 0,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 200, agency: str = who) -> dict:
        end = time.monotonic() + min(wait, MAX_WAIT)
        while True:
            rows = await run_in_threadpool(service.feed, db, agency, after, limit)
            if rows or time.monotonic() >= end:
                break
            await asyncio.sleep(POLL)
        await run_in_threadpool(service.logged, db, agency, "feed.read", 200, str(after), len(rows))
        return {"agency": agency, "records": rows, "last": rows[-1]["platform_seq"] if rows else after}

    @app.get("/api/v1/transfers/{transfer_id}/records")
    async def transfer_records(transfer_id: str, agency: str = who) -> dict:
        rows = await run_in_threadpool(service.of_transfer, db, agency, transfer_id)
        await run_in_threadpool(service.logged, db, agency, "transfer.read", 200, transfer_id, len(rows))
        if not rows:  # another's transfer and none at all look alike
            raise Refused("not_found", 404, "没有该转递的记录", "no records of this transfer for you", item=transfer_id)
        return {"transfer_id": transfer_id, "records": rows}

    return app

