"""Archive stage: originals, OCR results and searchable PDFs into preservation storage, verified.

Each object is copied from staging (or, for a material's PDF, made from its pages) to a
content-addressed key in the archive bucket, read back and compared with its sha256 before a
row in `stored_objects` records it. Objects already recorded are skipped, so a rerun copies
and renders nothing. The copies are made in units of page files (`plan_copy_units`,
`copy_objects`) and the PDFs in units of materials (`plan_pdf_units`, `make_pdfs`), each a step
of its own under Dagster, so that several workers share a large batch's; the batch is archived
(`finish_archive`) only once every object is recorded and every material has its PDF.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

from errors import NotReady
from ocr.images import load_pages
from ocr.pdf import searchable_pdf
from preservation import inventory
from stages.intake import CATALOG_MATERIALS
from stages.ocr import OcrNotDone, load_ocr
from stages.progress import advance
from stages.services import Services
from stages.units import pack
from storage import events
from storage.events import Event
from storage.objects import ObjectInfo, content_key, copy_verified, put_bytes_verified, sha256_hex
from storage.stored import StoredObject, record_verified

STORERS = 8
PDF_UNIT_PAGES = 200  # a PDF page costs a fifth of an OCR'd one or less: larger units, fewer hand-overs
COPY_UNIT_FILES = 500  # an original and its OCR result are two round trips each: seconds a unit


@dataclass
class ArchiveResult:
    batch_id: str
    stored: int
    already_stored: int
    bytes_stored: int
    pdfs_made: int = 0
    inventories_written: int = 0


@dataclass(frozen=True)
class ToPreserve:
    sha256: str
    staging_key: str
    bytes: int
    role: str          # original | ocr
    media_type: str


def _preserved_files(batch_id: str, services: Services, paths: list[str] | None = None) -> list[dict]:
    """The batch's manifest and the page files of the materials going on (of `paths` only, if given)."""
    with services.db.transaction() as cur:
        cur.execute("SELECT path, sha256, staging_key, bytes, role, media_type, status, ocr_key, ocr_sha256,"
                    " ocr_bytes FROM batch_files"
                    " WHERE batch_id = %s AND (%s::text[] IS NULL OR path = ANY(%s::text[]))"
                    " AND (role = 'manifest' OR (status = 'accepted' AND path IN"
                    f" (SELECT jsonb_array_elements_text(page_files) FROM ({CATALOG_MATERIALS}) c))) ORDER BY path",
                    (batch_id, paths, paths, batch_id))
        return cur.fetchall()


def objects_to_preserve(batch_id: str, services: Services, paths: list[str] | None = None) -> list[ToPreserve]:
    """The batch's manifest, the originals of the materials going on, and the OCR results the ocr
    stage recorded for them (of the files at `paths` only, if given)."""
    return _objects_of(batch_id, services, _preserved_files(batch_id, services, paths))


def _objects_of(batch_id: str, services: Services, rows: list[dict]) -> list[ToPreserve]:
    """The objects of these rows of `_preserved_files`: each file's original, and a page's OCR result."""
    for r in rows:
        if r["role"] == "page" and r["ocr_key"] is None:
            raise OcrNotDone(batch_id, r["path"])
    def result(r: dict) -> ObjectInfo | None:  # as the ocr stage recorded it; from the store for rows from before
        if r["ocr_sha256"]:
            return ObjectInfo(r["ocr_bytes"], r["ocr_sha256"])
        return services.store.head(services.staging_bucket, r["ocr_key"])

    pages = [r for r in rows if r["role"] == "page"]
    with ThreadPoolExecutor(STORERS) as pool:
        infos = dict(zip((r["path"] for r in pages), pool.map(result, pages), strict=True))
    out = []
    for r in rows:
        info = infos.get(r["path"])
        out.append(ToPreserve(r["sha256"], r["staging_key"], r["bytes"], "original", r["media_type"] or "text/csv"))
        if r["role"] == "page":
            key = r["ocr_key"]
            if info is None or not info.sha256:
                raise NotReady(f"{r['staging_key']} 的识别结果缺失，请先运行识别阶段",
                               f"OCR result {key} of {r['staging_key']} is missing: run the ocr stage first", item=key)
            out.append(ToPreserve(info.sha256, key, info.bytes, "ocr", "application/json"))
    return out


def _recorded(services: Services, objects: list[ToPreserve]) -> set[str]:
    """The archive keys of these objects that stored_objects records (verified copies)."""
    with services.db.transaction() as cur:
        cur.execute("SELECT key FROM stored_objects WHERE bucket = %s AND key = ANY(%s)",
                    (services.archive_bucket, [content_key(o.sha256) for o in objects]))
        return {r["key"] for r in cur.fetchall()}


def _not_copied(services: Services, objects: list[ToPreserve]) -> list[ToPreserve]:
    """Those of these objects with no verified copy recorded, in their order."""
    recorded = _recorded(services, objects)
    return [o for o in objects if content_key(o.sha256) not in recorded]


def _record(services: Services, key: str, sha: str, size: int, role: str, media_type: str, batch_id: str,
            how: str) -> None:
    """The stored object and its 'stored' event (saying how it was verified) in one transaction."""
    with services.db.transaction() as cur:
        if record_verified(cur, [StoredObject(services.archive_bucket, key, sha, size, role, media_type)]):
            events.record(cur, [Event("stored", batch_id=batch_id, object_sha256=sha, detail={
                "bucket": services.archive_bucket, "key": key, "role": role, "bytes": size,
                "verified": how})])


class PdfUnit(NamedTuple):
    """Materials one step makes the searchable PDFs of: about PDF_UNIT_PAGES pages, a larger
    material alone."""

    number: int
    material_ids: list[int]
    pages: int


@dataclass
class PdfsMade:
    made: int
    bytes: int


@dataclass
class ObjectsCopied:
    stored: int
    already_stored: int
    bytes: int


def _pdf_pages(batch_id: str, services: Services, material_ids: list[int] | None = None) -> dict[int, list[dict]]:
    """The pages, in order, of every material in the batch's catalog whose current version has no
    searchable PDF yet: a version this batch made, or one an earlier batch made and did not finish
    (a later batch's version is that batch's to make, with its OCR); only `material_ids`, if given."""
    only = " AND m.material_id = ANY(%s)" if material_ids is not None else ""
    with services.db.transaction() as cur:
        cur.execute(f"WITH listed AS ({CATALOG_MATERIALS}) SELECT m.material_id, m.file_number, m.class_code,"
                    " m.seq, m.title, m.version, m.batch_id AS made_by, p.page_no, p.source_sha256, p.source_page,"
                    " f.staging_key, f.ocr_key"
                    " FROM listed l JOIN materials m USING (file_number, class_code, seq)"
                    " JOIN batches made ON made.batch_id = m.batch_id JOIN batches this ON this.batch_id = %s"
                    " JOIN pages p USING (material_id)"
                    # the OCR result the making batch's ocr stage recorded, else another batch's
                    " JOIN LATERAL (SELECT staging_key, ocr_key FROM batch_files WHERE sha256 = p.source_sha256"
                    " ORDER BY ocr_key IS NULL, batch_id <> m.batch_id, batch_id LIMIT 1) f"
                    f" ON true WHERE m.pdf_sha256 IS NULL AND made.submitted_at <= this.submitted_at{only}"
                    " ORDER BY m.material_id, p.page_no",
                    (batch_id, batch_id, *([material_ids] if material_ids is not None else [])))
        rows = cur.fetchall()
    by_material: dict[int, list[dict]] = {}
    for r in rows:
        by_material.setdefault(r["material_id"], []).append(r)
    return by_material


def plan_pdf_units(batch_id: str, services: Services, unit_pages: int = PDF_UNIT_PAGES) -> list[PdfUnit]:
    """The materials still without a searchable PDF, in material order, split into units."""
    materials = ((material_id, len(rows)) for material_id, rows in _pdf_pages(batch_id, services).items())
    return [PdfUnit(n, ids, pages) for n, (ids, pages) in enumerate(pack(materials, unit_pages))]


def make_pdfs(batch_id: str, services: Services, material_ids: list[int]) -> PdfsMade:
    """Makes and stores the searchable PDF of each listed material that still has none (a retry
    makes only what an earlier attempt did not record)."""
    made = size = 0
    for material_id, pages in _pdf_pages(batch_id, services, material_ids).items():
        rendered = []
        for p in pages:  # one material at a time: a few pages in memory, never the batch
            image, _ = load_pages(services.store.get(services.staging_bucket, p["staging_key"]))[p["source_page"]]
            if p["ocr_key"] is None:
                raise OcrNotDone(p["made_by"], p["staging_key"])  # the batch whose ocr run must record it
            results, _ = load_ocr(services, p["ocr_key"])
            rendered.append((image, results[p["source_page"]]))
        first = pages[0]
        title = f"{first['file_number']} {first['class_code']}-{first['seq']} {first['title']}"
        pdf = searchable_pdf(rendered, title, services.agency)
        sha = sha256_hex(pdf)
        key = content_key(sha)
        how = put_bytes_verified(services.store, services.archive_bucket, key, pdf, "application/pdf")
        _record(services, key, sha, len(pdf), "searchable-pdf", "application/pdf", batch_id, how)
        with services.db.transaction() as cur:  # only if still the version it was made of
            cur.execute("UPDATE materials SET pdf_sha256 = %s WHERE material_id = %s AND version = %s",
                        (sha, material_id, first["version"]))
        made += 1
        size += len(pdf)
    return PdfsMade(made, size)


class PdfsNotDone(NotReady):
    """A material of the batch has no searchable PDF yet: a PDF unit has not run (or failed)."""

    def __init__(self, batch_id: str, material: str) -> None:
        super().__init__(f"批次 {batch_id} 的材料 {material} 尚无可检索 PDF，请重新运行归档阶段",
                         f"material {material} of batch {batch_id} has no searchable PDF yet: run the archive "
                         "stage again", item=material)


class CopyUnit(NamedTuple):
    """Files one step copies into the archive (each with its OCR result): about COPY_UNIT_FILES."""

    number: int
    paths: list[str]
    files: int


def plan_copy_units(batch_id: str, services: Services, unit_files: int = COPY_UNIT_FILES) -> list[CopyUnit]:
    """The manifest and the page files going on whose copies are not all recorded, in path order,
    split into units of page files (the manifest rides along)."""
    rows = _preserved_files(batch_id, services)
    missing = {o.staging_key for o in _not_copied(services, _objects_of(batch_id, services, rows))}
    files = ((r["path"], 1 if r["role"] == "page" else 0) for r in rows
             if r["staging_key"] in missing or r["ocr_key"] in missing)
    return [CopyUnit(n, paths, count) for n, (paths, count) in enumerate(pack(files, unit_files))]


class ObjectsNotCopied(NotReady):
    """An object of the batch has no verified copy in the archive: a copy unit has not run (or failed)."""

    def __init__(self, batch_id: str, key: str) -> None:
        super().__init__(f"批次 {batch_id} 的 {key} 尚未存入长期保存库，请重新运行归档阶段",
                         f"{key} of batch {batch_id} has no verified copy in the archive yet: run the archive "
                         "stage again", item=key)


def copy_objects(batch_id: str, services: Services, paths: list[str] | None = None) -> ObjectsCopied:
    """Copies the originals and OCR results not yet recorded into the archive bucket, verified
    (of the files at `paths` only, if given)."""
    bucket = services.archive_bucket
    already = 0
    objects = objects_to_preserve(batch_id, services, paths)
    recorded = _recorded(services, objects)
    todo: dict[str, ToPreserve] = {}
    for o in objects:
        key = content_key(o.sha256)
        if key in recorded:
            already += 1
        else:
            todo.setdefault(key, o)

    def preserve(key: str, o: ToPreserve) -> tuple[str, ToPreserve, str]:
        # streamed from staging into the archive, verified: a zip of gigabytes never in memory
        return key, o, copy_verified(services.store, services.staging_bucket, o.staging_key, services.store, bucket,
                                     key, o.sha256, o.bytes, o.media_type)

    with ThreadPoolExecutor(STORERS) as pool:  # page-sized objects: the store's round trips dominate
        for f in [pool.submit(preserve, key, o) for key, o in todo.items()]:
            key, o, how = f.result()   # recorded as each is verified: a crash loses no verified copy
            _record(services, key, o.sha256, o.bytes, o.role, o.media_type, batch_id, how)
    return ObjectsCopied(len(todo), already, sum(o.bytes for o in todo.values()))


def finish_archive(batch_id: str, services: Services, copied: list[ObjectsCopied],
                   pdfs: list[PdfsMade]) -> ArchiveResult:
    """Every object copied and every material with its PDF: the batch is archived, its files'
    inventories written. PdfsNotDone or ObjectsNotCopied naming the first missing, so no batch is
    archived with an object or a PDF missing."""
    if missing := _pdf_pages(batch_id, services):
        first = next(iter(missing.values()))[0]
        raise PdfsNotDone(batch_id, f"{first['file_number']} {first['class_code']}-{first['seq']}")
    if missing_copies := _not_copied(services, objects_to_preserve(batch_id, services)):
        raise ObjectsNotCopied(batch_id, missing_copies[0].staging_key)
    with services.db.transaction() as cur:
        advance(cur, batch_id, "archived")
    described = inventory.refresh_batch(services, batch_id)  # as archived: a rerun finds nothing to describe anew
    made, pdf_bytes = sum(p.made for p in pdfs), sum(p.bytes for p in pdfs)
    return ArchiveResult(batch_id, sum(c.stored for c in copied) + made, sum(c.already_stored for c in copied),
                         sum(c.bytes for c in copied) + pdf_bytes, made, len(described))


def archive_batch(batch_id: str, services: Services, unit_pages: int = PDF_UNIT_PAGES) -> ArchiveResult:
    """The whole stage in this process, PDF unit after PDF unit (the CLI's stages, tests)."""
    copied = copy_objects(batch_id, services)
    pdfs = [make_pdfs(batch_id, services, u.material_ids) for u in plan_pdf_units(batch_id, services, unit_pages)]
    return finish_archive(batch_id, services, [copied], pdfs)
