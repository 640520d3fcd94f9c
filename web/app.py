"""The staff web: the upload page, batch status and reports, and search, paged.

    archive serve [--port 8000]      # then open http://localhost:8000/ ; GET /api/search?q=张三

Uploads are handed in like every other channel; the batch sensor (or `launch`, when the
server runs batches itself) takes them through the stages, and the page follows their status.

Who asks is taken from the X-Archive-Actor header until logins arrive; every search is written
to access_log with the files it showed. ID numbers only ever leave masked.
"""

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile  # what request.form() yields (FastAPI's is a subclass)

from catalog.manifest import template_csv
from errors import ArchiveError, SetupError
from search.query import Filters, mask_query, search
from stages.progress import batch_status, recent_batches
from stages.report import batch_report, report_html
from stages.services import Services
from web.uploads import hand_in_upload

UPLOAD_PAGE = Path(__file__).parent / "static" / "upload.html"
MAX_UPLOAD_FILES = 100_000  # a batch folder holds thousands of pages; Starlette's default is 1,000


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


WEB_CONNECTIONS = 8  # kept open for requests: a new one cost 8-13 ms of a search (storage/db.py)


def create_app(services: Services | None = None, launch: Callable[[str], None] | None = None) -> FastAPI:
    """`launch(batch_id)` starts a run for a new upload; None leaves that to the batch sensor."""
    app = FastAPI(title="人事档案数字化 / personnel archive", version="1")
    state: dict = {"services": services}

    @app.exception_handler(ArchiveError)
    async def known_state(request: Request, exc: ArchiveError) -> JSONResponse:
        """The one place the web maps the project's errors: the bilingual sentence, and its kind."""
        detail = str(exc)
        if isinstance(exc, SetupError):  # staff can do nothing but wait; the detail is for engineers
            detail = f"服务暂不可用，请稍后重试 / a service is unavailable, retry later: {exc}"
        return JSONResponse({"detail": detail, **exc.to_dict()}, status_code=exc.http_status)

    def svc() -> Services:
        if state["services"] is None:
            state["services"] = Services.from_env(keep_connections=WEB_CONNECTIONS)
            state["services"].db.migrate()
        return state["services"]

    @app.get("/api/search")
    def api_search(q: Annotated[str, Query(min_length=1, max_length=100, description="name, phrase, ID or file no.")],
                   class_code: Annotated[str | None, Query(alias="class", pattern=r"^\d{1,2}(-\d{1,2})?$")] = None,
                   formed_from: Annotated[date | None, Query(alias="from")] = None,
                   formed_to: Annotated[date | None, Query(alias="to")] = None,
                   agency: str | None = None, batch: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=200)] = 20, offset: Annotated[int, Query(ge=0)] = 0,
                   actor: Annotated[str, Header(alias="X-Archive-Actor")] = "anonymous") -> dict:
        if formed_from and formed_to and formed_from > formed_to:
            raise HTTPException(422, "“from” 晚于 “to” / from is after to")
        filters = Filters(class_code, formed_from.isoformat() if formed_from else None,
                          formed_to.isoformat() if formed_to else None, agency, batch)
        s = svc()
        result = search(s.db, q, filters, limit=limit, offset=offset, actor=actor, id_hash_key=s.id_hash_key)
        hits = result.hits
        return {"query": mask_query(q), "limit": limit, "offset": offset, "hits": [h.to_dict() for h in hits],
                "truncated": result.truncated, "next_offset": offset + limit if len(hits) == limit else None}

    @app.get("/", response_class=HTMLResponse)
    def upload_page() -> str:
        return UPLOAD_PAGE.read_text(encoding="utf-8")

    @app.get("/manifest-template.csv")
    def manifest_template() -> Response:
        return Response(template_csv(), media_type="text/csv; charset=utf-8",
                        headers=_attachment("manifest-template.csv"))

    @app.post("/api/batches", status_code=201)
    async def api_upload(request: Request) -> JSONResponse:
        """Multipart: `files` (a folder's files, their paths as filenames, or one zip); `name` optional."""
        async with request.form(max_files=MAX_UPLOAD_FILES, max_fields=MAX_UPLOAD_FILES) as form:
            files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
            name = form.get("name") if isinstance(form.get("name"), str) else None
            sub = await run_in_threadpool(hand_in_upload, [(f.filename or "", f.file) for f in files], svc(), name)
        if launch is not None and batch_status(sub.batch_id, svc())["status"] == "submitted":
            launch(sub.batch_id)
        return JSONResponse({"batch_id": sub.batch_id, "new": sub.new, "files": sub.files,
                             "status_url": f"/api/batches/{sub.batch_id}",
                             "report_url": f"/batches/{sub.batch_id}/report"}, status_code=201 if sub.new else 200)

    @app.get("/api/batches")
    def api_batches(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict:
        return {"batches": recent_batches(svc(), limit)}

    def of_batch(read: Callable[[str, Services], dict], batch_id: str) -> dict:
        return read(batch_id, svc())

    @app.get("/api/batches/{batch_id}")
    def api_batch(batch_id: str) -> dict:
        return of_batch(batch_status, batch_id)

    @app.get("/api/batches/{batch_id}/report")
    def api_report(batch_id: str, download: bool = False) -> JSONResponse:
        return JSONResponse(of_batch(batch_report, batch_id),
                            headers=_attachment(f"report-{batch_id}.json") if download else None)

    @app.get("/batches/{batch_id}/report", response_class=HTMLResponse)
    def page_report(batch_id: str, download: bool = False) -> HTMLResponse:
        return HTMLResponse(report_html(of_batch(batch_report, batch_id)),
                            headers=_attachment(f"report-{batch_id}.html") if download else None)

    return app
