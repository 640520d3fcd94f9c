"""Transfers on the staff web: an archivist sends a file of their agency to another (发起转递 on
the file view), follows its steps, sees which receipts are late, cancels one not yet fetched.
Only their own agency's transfers, sent or addressed to it; others are not found."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from access.identity import Identity
from access.roles import Permission
from catalog.idnumber import masked_data
from errors import NotFound
from stages import transfer as stage
from stages.services import Services
from transfer import registry
from transfer.states import ACTIVE, FINAL
from web.auth import Auth


def add_transfer_routes(app: FastAPI, auth: Auth, svc: Callable[[], Services], recorded: Callable[..., None],
                        scoped: Callable[..., Awaitable], launch: Callable[[str], None] | None) -> None:
    requester = Depends(auth.need(Permission.TRANSFERS_REQUEST))
    reader = Depends(auth.need(Permission.TRANSFERS_READ))

    @app.get("/api/agencies")
    def api_agencies(who: Identity = requester) -> dict:
        """The registry's agencies a file may go to (not this one)."""
        with svc().db.transaction() as cur:
            listed = registry.agencies(cur)
        return {"agencies": [{"code": a.code, "name": a.name, "province": a.province} for a in listed
                             if a.code != who.agency]}

    @app.post("/api/files/{file_number}/transfers", status_code=201)
    async def api_request_transfer(request: Request, file_number: str,
                                   receiving_agency: Annotated[str, Form(max_length=40)] = "",
                                   reason: Annotated[str, Form(max_length=200)] = "",
                                   handler: Annotated[str, Form(max_length=60)] = "",
                                   who: Identity = requester) -> JSONResponse:
        def held(number: str) -> None:  # another agency's file is not found, as one that does not exist
            with svc().db.transaction() as cur:
                cur.execute("SELECT 1 FROM personnel_files WHERE file_number = %s AND holding_agency = %s",
                            (number, who.agency))
                if cur.fetchone() is None:
                    raise NotFound("未找到", "not found", item=number)

        await scoped(request, who, held, file_number)
        services = svc()
        t = await run_in_threadpool(stage.request_transfer, services, file_number, receiving_agency, reason, handler,
                                    who.actor)
        if launch is not None:
            launch(t.transfer_id)
        return JSONResponse({**t.to_dict(), "url": f"/api/transfers/{t.transfer_id}"}, status_code=201)

    @app.get("/api/transfers")
    def api_transfers(direction: Annotated[str, Query(pattern="^(outgoing|incoming)$")] = "outgoing",
                      state: Annotated[str, Query(pattern="^(active|final|all)$")] = "all",
                      file: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                      who: Identity = reader) -> dict:
        if who.agency is None:
            return {"transfers": []}
        status = {"active": ACTIVE, "final": FINAL, "all": None}[state]
        side = {"sender": who.agency} if direction == "outgoing" else {"receiver": who.agency}
        rows = stage.transfers(svc(), status=status, file_number=file, limit=limit, **side)
        recorded(who, "transfer.list", detail={"direction": direction, "rows": len(rows)},
                 file_numbers=sorted({t.file_number for t in rows}))
        return {"transfers": [t.to_dict() for t in rows],
                "overdue": sum(1 for t in rows if t.overdue_at is not None and t.status in ACTIVE)}

    @app.get("/api/transfers/{transfer_id}")
    async def api_transfer(request: Request, transfer_id: str, who: Identity = reader) -> dict:
        detail = await scoped(request, who, stage.transfer_detail, svc(), transfer_id, who.agency)
        await run_in_threadpool(recorded, who, "transfer.view", target=detail["transfer_id"],
                                file_numbers=[detail["file_number"]])
        return masked_data(detail)

    @app.post("/api/transfers/{transfer_id}/cancel")
    async def api_cancel_transfer(request: Request, transfer_id: str,
                                  why: Annotated[str, Form(max_length=200)] = "",
                                  who: Identity = requester) -> dict:
        def mine(tid: str) -> None:
            if stage.transfer(svc(), tid, who.agency).sending_agency != who.agency:
                raise NotFound("未找到", "not found", item=tid)

        await scoped(request, who, mine, transfer_id)
        t = await run_in_threadpool(stage.cancel_transfer, svc(), transfer_id, who.actor, why)
        return t.to_dict()
