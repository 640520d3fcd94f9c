"""The staff web: login, the upload page and batch reports for staff, search and the file view
for archivists, the audit trail for auditors; the same API for machine clients with tokens.

    archive serve [--port 8000]      # then open http://127.0.0.1:8000/

Who asks is the session of a logged-in user or an API token (web/auth.py), never a header that
names someone; each agency sees only its own batches and files; every read of personal data and
every refusal is a row of the audit trail. What every request passes first: web/security.py.
"""

import logging
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile  # what request.form() yields (FastAPI's is a subclass)

from access import audit
from access.identity import Identity
from access.roles import ROLE_ZH, Permission
from catalog.idnumber import mask_ids
from catalog.manifest import template_csv
from errors import ArchiveError, NotFound, SetupError
from search.query import Filters, mask_query, search
from settings import Settings
from stages import files as file_stage
from stages.progress import batch_status, recent_batches
from stages.report import batch_report, report_html
from stages.services import Services
from web.auth import Auth, Denied, login_redirect
from web.pull import add_pull_routes
from web.security import Guard
from web.transfers import add_transfer_routes
from web.uploads import hand_in_upload

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("archive.web")
MAX_UPLOAD_FILES = 100_000  # a batch folder holds thousands of pages; Starlette's default is 1,000
WEB_CONNECTIONS = 8  # kept open for requests: a new one cost 8-13 ms of a search (storage/db.py)


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def create_app(services: Services | None = None, launch: Callable[[str], None] | None = None,
               tls: bool = False, launch_transfer: Callable[[str], None] | None = None) -> FastAPI:
    """`launch(batch_id)` starts a run for a new upload, `launch_transfer(transfer_id)` one for a
    transfer requested; None leaves them to the Dagster sensors."""
    state: dict = {"services": services}

    def svc() -> Services:
        if state["services"] is None:  # kept only once prepared: production refuses every request until safe
            fresh = Services.from_env(keep_connections=WEB_CONNECTIONS)
            fresh.prepare()
            state["services"] = fresh
        return state["services"]

    settings = services.settings if services else Settings.from_env()
    app = FastAPI(title="人事档案数字化 / personnel archive", version="2", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(Guard, allowed_hosts=settings.allowed_hosts, max_body=settings.max_upload_bytes,
                       hsts=tls or settings.behind_tls_proxy)
    auth = Auth(svc)
    staff = Depends(auth.need(Permission.BATCHES_READ))
    submitter = Depends(auth.need(Permission.BATCHES_SUBMIT))
    searcher = Depends(auth.need(Permission.FILES_SEARCH))
    reader = Depends(auth.need(Permission.FILES_READ))
    documents = Depends(auth.need(Permission.FILES_DOCUMENTS))
    revealer = Depends(auth.need(Permission.ID_REVEAL))
    auditor = Depends(auth.need(Permission.AUDIT_READ))
    engineer = Depends(auth.need(Permission.PIPELINE_UI))
    anyone = Depends(auth.need())

    @app.exception_handler(ArchiveError)
    async def known_state(request: Request, exc: ArchiveError) -> JSONResponse:
        """The one place the web maps the project's errors: the bilingual sentence, and its kind."""
        if isinstance(exc, SetupError):  # callers can do nothing but wait; what is wrong is for the log
            log.error("%s %s: %s", request.method, request.url.path, exc)
            return JSONResponse({"detail": "服务暂不可用，请稍后重试 / a service is unavailable, retry later",
                                 "kind": exc.kind}, status_code=exc.http_status)
        return JSONResponse({"detail": str(exc), **exc.to_dict()}, status_code=exc.http_status)

    def recorded(who: Identity, action: str, **kwargs) -> None:
        with svc().db.transaction() as cur:
            audit.record(cur, who.actor, action, **kwargs)

    async def scoped(request: Request, who: Identity, read: Callable, *args):
        """`read(*args)` for the caller's agency; another agency's thing is not found, audited. A
        caller of no agency is of none: nothing is found (never "every agency")."""
        if who.agency is None:
            raise await run_in_threadpool(auth.not_found, request, who)
        try:
            return await run_in_threadpool(read, *args)
        except NotFound:
            raise await run_in_threadpool(auth.not_found, request, who) from None

    # pages: HTML and their scripts; a page that shows personal data loads it from the API
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page() -> FileResponse:
        return FileResponse(STATIC / "login.html")

    async def page(request: Request, name: str) -> Response:
        who = await run_in_threadpool(auth.identify, request)
        return FileResponse(STATIC / name) if who else login_redirect(request)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def upload_page(request: Request) -> Response:
        return await page(request, "upload.html")

    @app.get("/search", response_class=HTMLResponse, include_in_schema=False)
    async def search_page(request: Request) -> Response:
        return await page(request, "search.html")

    @app.get("/files/{file_number}", response_class=HTMLResponse, include_in_schema=False)
    async def file_page(request: Request, file_number: str) -> Response:
        return await page(request, "file.html")

    @app.get("/transfers", response_class=HTMLResponse, include_in_schema=False)
    async def transfers_page(request: Request) -> Response:
        return await page(request, "transfers.html")

    @app.get("/manifest-template.csv")
    def manifest_template() -> Response:
        return Response(template_csv(), media_type="text/csv; charset=utf-8",
                        headers=_attachment("manifest-template.csv"))

    # identity
    @app.post("/api/login")
    async def api_login(request: Request, username: Annotated[str, Form(max_length=100)],
                        password: Annotated[str, Form(max_length=200)]) -> JSONResponse:
        return await auth.login(request, username, password)

    @app.post("/api/logout")
    async def api_logout(request: Request) -> JSONResponse:
        return await auth.logout(request)

    @app.get("/api/session")
    def api_session(who: Identity = anyone) -> dict:
        return {"user": who.name, "kind": who.kind, "role": who.role.value if who.role else None,
                "role_zh": ROLE_ZH.get(who.role, "") if who.role else "", "agency": who.agency,
                "permissions": sorted(p.value for p in who.permissions)}

    @app.get("/api/session/pipeline-ui", status_code=204)
    def api_pipeline_ui(who: Identity = engineer) -> Response:
        """For a proxy in front of the Dagster UI (nginx auth_request): 204 lets the request through."""
        return Response(status_code=204)

    # staff: batches of their agency
    @app.post("/api/batches", status_code=201)
    async def api_upload(request: Request, who: Identity = submitter) -> JSONResponse:
        """Multipart: `files` (a folder's files, their paths as filenames, or one zip); `name` optional."""
        async with request.form(max_files=MAX_UPLOAD_FILES, max_fields=MAX_UPLOAD_FILES) as form:
            files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
            name = form.get("name") if isinstance(form.get("name"), str) else None
            sub = await run_in_threadpool(hand_in_upload, [(f.filename or "", f.file) for f in files], svc(), name,
                                          who.agency)
        await run_in_threadpool(recorded, who, "batch.upload", target=sub.batch_id,
                                detail={"files": sub.files, "new": sub.new})
        if launch is not None and batch_status(sub.batch_id, svc())["status"] == "submitted":
            launch(sub.batch_id)
        return JSONResponse({"batch_id": sub.batch_id, "new": sub.new, "files": sub.files,
                             "status_url": f"/api/batches/{sub.batch_id}",
                             "report_url": f"/batches/{sub.batch_id}/report"}, status_code=201 if sub.new else 200)

    @app.get("/api/batches")
    def api_batches(limit: Annotated[int, Query(ge=1, le=500)] = 50, who: Identity = staff) -> dict:
        return {"batches": recent_batches(svc(), limit, who.agency) if who.agency else []}

    @app.get("/api/batches/{batch_id}")
    async def api_batch(request: Request, batch_id: str, who: Identity = staff) -> dict:
        return await scoped(request, who, batch_status, batch_id, svc(), who.agency)

    async def report_of(request: Request, batch_id: str, who: Identity) -> dict:
        report = await scoped(request, who, batch_report, batch_id, svc(), who.agency)
        await run_in_threadpool(recorded, who, "batch.report", target=batch_id)
        return report

    @app.get("/api/batches/{batch_id}/report")
    async def api_report(request: Request, batch_id: str, download: bool = False,
                         who: Identity = staff) -> JSONResponse:
        return JSONResponse(await report_of(request, batch_id, who),
                            headers=_attachment(f"report-{batch_id}.json") if download else None)

    @app.get("/batches/{batch_id}/report", response_class=HTMLResponse)
    async def page_report(request: Request, batch_id: str, download: bool = False,
                          who: Identity = staff) -> HTMLResponse:
        return HTMLResponse(report_html(await report_of(request, batch_id, who)),
                            headers=_attachment(f"report-{batch_id}.html") if download else None)

    # archivists: search and the file view, their agency's files only
    @app.get("/api/search")
    async def api_search(request: Request, q: Annotated[str, Query(min_length=1, max_length=100)],
                         class_code: Annotated[str | None, Query(alias="class", pattern=r"^\d{1,2}(-\d{1,2})?$")]
                         = None,
                         formed_from: Annotated[date | None, Query(alias="from")] = None,
                         formed_to: Annotated[date | None, Query(alias="to")] = None,
                         batch: str | None = None,
                         limit: Annotated[int, Query(ge=1, le=200)] = 20, offset: Annotated[int, Query(ge=0)] = 0,
                         who: Identity = searcher) -> dict:
        if not auth.searches.allow(f"{who.kind}:{who.ident}"):
            raise HTTPException(429, "搜索过于频繁，请稍后再试 / too many searches, try again in a minute")
        if formed_from and formed_to and formed_from > formed_to:
            raise HTTPException(422, "“from” 晚于 “to” / from is after to")
        if who.agency is None:  # a caller of no agency sees no agency's files
            return {"query": mask_query(q), "limit": limit, "offset": offset, "hits": [], "truncated": False,
                    "next_offset": None}
        filters = Filters(class_code, formed_from.isoformat() if formed_from else None,
                          formed_to.isoformat() if formed_to else None, who.agency, batch)
        s = svc()
        result = await run_in_threadpool(search, s.db, q, filters, limit, offset, who.actor, s.id_hash_key)
        hits = result.hits
        return {"query": mask_query(q), "limit": limit, "offset": offset, "hits": [h.to_dict() for h in hits],
                "truncated": result.truncated, "next_offset": offset + limit if len(hits) == limit else None}

    @app.get("/api/files/{file_number}")
    async def api_file(request: Request, file_number: str, who: Identity = reader) -> dict:
        view = await scoped(request, who, file_stage.file_view, svc(), file_number, who.agency)
        await run_in_threadpool(recorded, who, "file.view", target=file_number, file_numbers=[file_number])
        return view

    @app.get("/api/files/{file_number}/pages/{page_id}/image")
    async def api_page_image(request: Request, file_number: str, page_id: int, who: Identity = documents) -> Response:
        image = await scoped(request, who, file_stage.page_image, svc(), file_number, page_id, who.agency)
        await run_in_threadpool(recorded, who, "page.view", target=file_number, file_numbers=[file_number],
                                detail={"page_id": page_id})
        return Response(image, media_type="image/jpeg")

    @app.get("/api/files/{file_number}/materials/{material_id}/pdf")
    async def api_material_pdf(request: Request, file_number: str, material_id: int,
                               who: Identity = documents) -> Response:
        name, data = await scoped(request, who, file_stage.material_pdf, svc(), file_number, material_id, who.agency)
        await run_in_threadpool(recorded, who, "pdf.download", target=file_number, file_numbers=[file_number],
                                detail={"material_id": material_id})
        return Response(data, media_type="application/pdf", headers=_attachment(name))

    @app.post("/api/files/{file_number}/id-number")
    async def api_reveal_id(request: Request, file_number: str, who: Identity = revealer) -> dict:
        """The full ID number, one look, audited (a POST: it is an act, not a page to cache or prefetch)."""
        number = await scoped(request, who, file_stage.reveal_id, svc(), file_number, who.agency)
        await run_in_threadpool(recorded, who, "id.reveal", target=file_number, file_numbers=[file_number])
        return {"file_number": file_number, "id_number": number}

    # auditors
    @app.get("/api/audit")
    def api_audit(actor: str | None = None, file: str | None = None, since: datetime | None = None,
                  until: datetime | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                  who: Identity = auditor) -> dict:
        with svc().db.transaction() as cur:
            rows = audit.query(cur, actor=actor, file_number=file, since=since, until=until, limit=limit)
            audit.record(cur, who.actor, "audit.read", detail={"actor": actor, "file": file, "rows": len(rows)})
        return {"rows": [{**r.__dict__, "at": r.at.isoformat(), "target": mask_ids(r.target)} for r in rows]}

    # transfers: archivists send and follow them (web/transfers.py); receiving agencies pull (web/pull.py)
    add_transfer_routes(app, auth, svc, recorded, scoped, launch_transfer)
    add_pull_routes(app, auth, svc, recorded)

    @app.exception_handler(Denied)
    async def denied(request: Request, exc: Denied) -> Response:
        if request.method == "GET" and exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            return login_redirect(request)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return RedirectResponse("/static/favicon.svg", status_code=301)

    return app
