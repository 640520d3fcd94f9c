"""The HTTP API: search for the staff pages, paged; batch reports as JSON and as a page.

    archive serve [--port 8000]      # then GET /api/search?q=张三&class=4&limit=20&offset=0

Who asks is taken from the X-Archive-Actor header until logins arrive; every search is written
to access_log with the files it showed. ID numbers only ever leave masked.
"""

from datetime import date
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Query
from fastapi.responses import HTMLResponse

from search.query import Filters, mask_query, search
from stages.report import batch_report, report_html
from stages.services import Services


def create_app(services: Services | None = None) -> FastAPI:
    app = FastAPI(title="人事档案数字化 / personnel archive", version="1")
    state: dict = {"services": services}

    def svc() -> Services:
        if state["services"] is None:
            state["services"] = Services.from_env()
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

    @app.get("/api/batches/{batch_id}/report")
    def api_report(batch_id: str) -> dict:
        try:
            return batch_report(batch_id, svc())
        except LookupError as exc:
            raise HTTPException(404, f"没有这个批次 / {exc}") from exc

    @app.get("/batches/{batch_id}/report", response_class=HTMLResponse)
    def page_report(batch_id: str) -> str:
        return report_html(api_report(batch_id))

    return app
