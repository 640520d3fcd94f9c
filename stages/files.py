"""A personnel file as an archivist opens it: its catalog by category, each material's pages, OCR
text and searchable PDF, its versions and event history; the page images and PDFs themselves;
and its ID number, for a role allowed to see it. Only the holding agency's own: a file of
another agency is not found, as one that does not exist."""

from __future__ import annotations

import dataclasses
import io

from catalog.categories import CATEGORIES
from catalog.idnumber import masked_data
from errors import NotFound
from ocr.images import load_pages
from stages.history import file_history
from stages.services import Services
from storage.objects import content_key

VIEW_SIDE = 1600  # px, the long side of a page image as the file view shows it


def _not_found(file_number: str) -> NotFound:
    return NotFound(f"没有档号为 {file_number} 的档案", f"no personnel file {file_number}", item=file_number)


def _held(cur, file_number: str, agency: str | None) -> dict:
    cur.execute("SELECT file_number, name, id_masked, holding_agency, indexed_at FROM personnel_files"
                " WHERE file_number = %s AND (%s::text IS NULL OR holding_agency = %s)",
                (file_number, agency, agency))
    row = cur.fetchone()
    if row is None:
        raise _not_found(file_number)
    return row


def _category(class_code: str) -> str:
    top = class_code.split("-")[0]
    return CATEGORIES.get(class_code) or CATEGORIES.get(top, "")


def file_view(services: Services, file_number: str, agency: str | None) -> dict:
    with services.db.transaction() as cur:
        person = _held(cur, file_number, agency)
        cur.execute("SELECT m.material_id, m.class_code, m.seq, m.title, m.formed, m.copies, m.page_count, m.remarks,"
                    " m.version, m.pdf_sha256, m.batch_id, p.page_id, p.page_no, p.ocr_text, p.ocr_confidence"
                    " FROM materials m LEFT JOIN pages p USING (material_id) WHERE m.file_number = %s"
                    " ORDER BY m.material_id, p.page_no", (file_number,))
        rows = cur.fetchall()
    materials: dict[int, dict] = {}
    for r in rows:
        m = materials.setdefault(r["material_id"], {
            "material_id": r["material_id"], "code": f"{r['class_code']}-{r['seq']}", "class_code": r["class_code"],
            "category": _category(r["class_code"]), "seq": r["seq"], "title": r["title"], "formed": r["formed"],
            "copies": r["copies"], "page_count": r["page_count"], "remarks": r["remarks"], "version": r["version"],
            "has_pdf": r["pdf_sha256"] is not None, "batch_id": r["batch_id"], "pages": []})
        if r["page_id"] is not None:
            m["pages"].append({"page_id": r["page_id"], "page_no": r["page_no"], "text": r["ocr_text"] or "",
                               "confidence": r["ocr_confidence"]})
    ordered = sorted(materials.values(), key=lambda m: (tuple(int(x) for x in m["class_code"].split("-")),
                                                        m["formed"], m["seq"]))
    by_category: dict[str, list[dict]] = {}
    for m in ordered:
        by_category.setdefault(m["class_code"].split("-")[0], []).append(m)
    history = file_history(file_number, services)
    return masked_data({"file_number": person["file_number"], "name": person["name"], "id_masked": person["id_masked"],
            "holding_agency": person["holding_agency"],
            "categories": [{"class": c, "category": CATEGORIES.get(c, ""), "materials": ms}
                           for c, ms in sorted(by_category.items(), key=lambda kv: int(kv[0]))],
            "versions": [{**dataclasses.asdict(v), "pages": len(v.pages)} for v in history.versions],
            "events": [dataclasses.asdict(e) for e in history.events]})


def page_image(services: Services, file_number: str, page_id: int, agency: str | None) -> bytes:
    """The page as scanned, a JPEG of at most VIEW_SIDE px: every scan format a browser can show.
    Read from preservation storage (a file received by transfer has no staging copy), else from
    staging (a batch not yet archived)."""
    with services.db.transaction() as cur:
        _held(cur, file_number, agency)
        cur.execute("SELECT p.source_sha256, p.source_page, o.key AS archive_key, f.staging_key FROM pages p"
                    " JOIN materials m USING (material_id)"
                    " LEFT JOIN stored_objects o ON o.bucket = %s AND o.sha256 = p.source_sha256"
                    " AND o.role = 'original'"
                    " LEFT JOIN LATERAL (SELECT staging_key FROM batch_files WHERE sha256 = p.source_sha256"
                    " LIMIT 1) f ON true WHERE p.page_id = %s AND m.file_number = %s",
                    (services.archive_bucket, page_id, file_number))
        row = cur.fetchone()
    if row is None or not (row["archive_key"] or row["staging_key"]):
        raise _not_found(file_number)
    data = services.store.get(services.archive_bucket, row["archive_key"]) if row["archive_key"] else \
        services.store.get(services.staging_bucket, row["staging_key"])
    image, _ = load_pages(data)[row["source_page"]]
    image = image.convert("RGB") if image.mode not in ("RGB", "L") else image
    image.thumbnail((VIEW_SIDE, VIEW_SIDE))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def material_pdf(services: Services, file_number: str, material_id: int, agency: str | None) -> tuple[str, bytes]:
    """(file name, bytes) of the material's current searchable PDF/A."""
    with services.db.transaction() as cur:
        _held(cur, file_number, agency)
        cur.execute("SELECT class_code, seq, pdf_sha256 FROM materials WHERE material_id = %s AND file_number = %s",
                    (material_id, file_number))
        row = cur.fetchone()
    if row is None or row["pdf_sha256"] is None:
        raise _not_found(file_number)
    data = services.store.get(services.archive_bucket, content_key(row["pdf_sha256"]))
    return f"{file_number}-{row['class_code']}-{row['seq']}.pdf", data


def reveal_id(services: Services, file_number: str, agency: str | None) -> str:
    with services.db.transaction() as cur:
        _held(cur, file_number, agency)
        cur.execute("SELECT id_number_encrypted FROM personnel_files WHERE file_number = %s", (file_number,))
        stored = cur.fetchone()["id_number_encrypted"]
    return services.id_cipher.decrypt(stored, file_number)
