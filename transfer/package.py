"""The transfer package: a BagIt bag (RFC 8493, made with the Library of Congress `bagit`
library) of one personnel file as preserved, tarred, for the receiving agency to fetch.

Built from preservation storage one object at a time into a working folder (a 2,000-page file
never sits in memory), checked for the four properties (transfer/fourprops.py, the report goes
in the bag), bagged with SHA-256 manifests and a tag manifest, tarred (scans are compressed
already) and its digest taken while it is read back.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from catalog.idnumber import mask
from errors import IntegrityFailure, NotReady
from stages.history import file_history
from stages.services import Services
from storage.objects import content_key, download, file_sha256
from transfer.fourprops import check_payload, failed
from transfer.printable import material_list_pdf, notice_pdf

FETCHERS = 8   # objects read from the store at once
EXTENSIONS = {"image/jpeg": "jpg", "image/tiff": "tif", "image/png": "png", "application/pdf": "pdf"}


class PackageNotReady(NotReady):
    """Some object of the file is not in preservation storage (yet)."""


@dataclass(frozen=True)
class Package:
    path: Path
    sha256: str
    bytes: int
    tagmanifest_sha256: str
    payload_oxum: str
    notice: dict          # as given, with the counts filled in
    checks: list[dict]


_FILE = """
SELECT m.material_id, m.class_code, m.seq, m.title, m.formed, m.copies, m.page_count, m.remarks, m.version,
       m.pdf_sha256, p.page_no, p.source_sha256, p.source_page, p.source_path, p.ocr_sha256,
       o.bytes AS original_bytes, o.media_type, r.bytes AS ocr_bytes, d.bytes AS pdf_bytes
FROM materials m JOIN pages p USING (material_id)
LEFT JOIN stored_objects o ON o.bucket = %(bucket)s AND o.sha256 = p.source_sha256 AND o.role = 'original'
LEFT JOIN stored_objects r ON r.bucket = %(bucket)s AND r.sha256 = p.ocr_sha256 AND r.role = 'ocr'
LEFT JOIN stored_objects d ON d.bucket = %(bucket)s AND d.sha256 = m.pdf_sha256 AND d.role = 'searchable-pdf'
WHERE m.file_number = %(file)s ORDER BY m.class_code, m.seq, p.page_no
"""


def _class_key(code: str) -> tuple[int, ...]:
    return tuple(int(x) for x in code.split("-"))


def catalog_of(services: Services, file_number: str) -> tuple[dict, dict, list[tuple[str, str, int]]]:
    """(person, catalog, objects to copy as (bag path, sha256, bytes)) of the file's current
    versions; PackageNotReady names what is not preserved."""
    with services.db.transaction() as cur:
        cur.execute("SELECT file_number, name, id_number_encrypted, id_masked, holding_agency FROM personnel_files"
                    " WHERE file_number = %s", (file_number,))
        person = cur.fetchone()
        cur.execute(_FILE, {"bucket": services.archive_bucket, "file": file_number})
        rows = cur.fetchall()
    if person is None or not rows:
        raise PackageNotReady(f"档案 {file_number} 尚未入库", f"file {file_number} is not indexed", item=file_number)
    materials: dict[int, dict] = {}
    objects: dict[str, tuple[str, int]] = {}
    missing = []
    for r in rows:
        code = f"{r['class_code']}-{r['seq']}"
        m = materials.setdefault(r["material_id"], {
            "code": code, "class_code": r["class_code"], "seq": r["seq"], "title": r["title"], "formed": r["formed"],
            "copies": r["copies"], "page_count": r["page_count"], "remarks": r["remarks"], "version": r["version"],
            "pdf": f"pdf/{code}.pdf" if r["pdf_sha256"] else None, "pdf_sha256": r["pdf_sha256"], "pages": []})
        if r["pdf_sha256"] is None or r["pdf_bytes"] is None:
            missing.append(f"{code} PDF")
        elif m["pdf"] not in objects:
            objects[m["pdf"]] = (r["pdf_sha256"], r["pdf_bytes"])
        if r["original_bytes"] is None or r["ocr_bytes"] is None:
            missing.append(f"{code} p.{r['page_no']}")
            continue
        original = f"originals/{r['source_sha256']}.{EXTENSIONS.get(r['media_type'], 'bin')}"
        ocr = f"ocr/{r['ocr_sha256']}.json"
        objects[original] = (r["source_sha256"], r["original_bytes"])
        objects[ocr] = (r["ocr_sha256"], r["ocr_bytes"])
        m["pages"].append({"page_no": r["page_no"], "original": original, "original_sha256": r["source_sha256"],
                           "source_page": r["source_page"], "source_path": r["source_path"],
                           "media_type": r["media_type"], "ocr": ocr,
                           "ocr_sha256": r["ocr_sha256"]})
    if missing:
        raise PackageNotReady(f"档案 {file_number} 尚有对象未归档保存：{'、'.join(missing[:5])}",
                              f"file {file_number}: not yet in preservation storage: {', '.join(missing[:5])}",
                              item=file_number)
    ordered = sorted(materials.values(), key=lambda m: (_class_key(m["class_code"]), m["formed"], m["seq"]))
    number = services.id_cipher.decrypt(person["id_number_encrypted"], file_number)
    person_doc = {"file_number": file_number, "name": person["name"], "id_number": number,
                  "id_masked": mask(number), "holding_agency": person["holding_agency"]}
    return person_doc, {"file_number": file_number, "materials": ordered}, \
        [(path, sha, size) for path, (sha, size) in sorted(objects.items())]


def build(services: Services, transfer_id: str, file_number: str, notice: dict, bag_info: dict,
          workdir: Path) -> Package:
    """The bag of the file's current versions in `workdir`, tarred; `notice` gets the counts."""
    bag_dir = workdir / transfer_id
    bag_dir.mkdir(parents=True)
    person, catalog, objects = catalog_of(services, file_number)
    notice = {**notice, "person_name": person["name"], "material_count": len(catalog["materials"]),
              "page_count": sum(len(m["pages"]) for m in catalog["materials"])}
    def fetch(path: str, sha: str, size: int) -> None:  # a chunk at a time, never a whole file in memory
        target = bag_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if download(services.store, services.archive_bucket, content_key(sha), target, size) != sha:
            raise IntegrityFailure(f"归档对象 {sha} 读回的摘要与记录不符", f"preserved object {sha} does not match "
                                   "its sha256", item=sha)

    with ThreadPoolExecutor(FETCHERS) as pool:  # page-sized objects: the store's round trips dominate
        for done in [pool.submit(fetch, *o) for o in objects]:
            done.result()
    history = file_history(file_number, services)
    documents = {
        "person.json": json.dumps(person, ensure_ascii=False, indent=1),
        "catalog.json": json.dumps(catalog, ensure_ascii=False, indent=1),
        "notice.json": json.dumps(notice, ensure_ascii=False, indent=1),
        "history.json": json.dumps({"versions": [dataclasses.asdict(v) for v in history.versions],
                                    "events": [dataclasses.asdict(e) for e in history.events]},
                                   ensure_ascii=False, indent=1, default=str),
    }
    for name, text in documents.items():
        (bag_dir / name).write_text(text, encoding="utf-8")
    (bag_dir / "notice.pdf").write_bytes(notice_pdf(notice))
    (bag_dir / "material-list.pdf").write_bytes(material_list_pdf(file_number, person["name"], catalog["materials"]))
    checks = check_payload(bag_dir, notice, formats=False)
    (bag_dir / "four-properties.json").write_text(json.dumps([c.to_dict() for c in checks], ensure_ascii=False,
                                                             indent=1), encoding="utf-8")
    if bad := failed(checks):
        raise IntegrityFailure(f"转递包未通过四性检测：{bad[0].message_zh}",
                               f"the package fails the four-property checks: {bad[0].message_en}", item=transfer_id)
    oxum = _make_bag(bag_dir, bag_info, transfer_id)
    tagmanifest = file_sha256(bag_dir / "tagmanifest-sha256.txt")
    tar_path = workdir / f"{transfer_id}.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(bag_dir.rglob("*")):  # stable order: the same bag gives the same tar
            info = tar.gettarinfo(str(path), arcname=f"{transfer_id}/{path.relative_to(bag_dir).as_posix()}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isfile():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return Package(tar_path, file_sha256(tar_path), tar_path.stat().st_size, tagmanifest, oxum, notice,
                   [c.to_dict() for c in checks])


# bagit.make_bag changes the working directory of its whole process while it hashes and moves
# the payload: two packagers in threads of one process (the web server's runs) would write into
# each other's bags, and any other thread's relative path would point elsewhere. So it runs in a
# process of its own (~70 ms).
MAKE_BAG = """
import json, sys
import bagit
args = json.loads(sys.stdin.read())
bag = bagit.make_bag(args["dir"], args["info"], checksums=["sha256"])
print(bag.info["Payload-Oxum"])
"""


BAG_SECONDS = 3600  # hashing a file of several GB takes minutes; a hung child must not hold the step for ever


def _make_bag(bag_dir: Path, bag_info: dict, transfer_id: str) -> str:
    """Makes `bag_dir` a BagIt bag in place (payload under data/, sha256 manifests); its Payload-Oxum."""
    try:  # -I: the child imports bagit and json from the installation, never from the working directory
        done = subprocess.run([sys.executable, "-I", "-c", MAKE_BAG], capture_output=True, encoding="utf-8",
                              input=json.dumps({"dir": str(bag_dir.resolve()), "info": bag_info}),
                              timeout=BAG_SECONDS)
    except subprocess.TimeoutExpired:
        raise PackagingFailed(transfer_id, [f"bagit did not finish within {BAG_SECONDS} s"]) from None
    if done.returncode:
        raise PackagingFailed(transfer_id, done.stderr.strip().splitlines()[-1:] or ["no output"])
    return done.stdout.strip()


class PackagingFailed(IntegrityFailure):
    """bagit could not make the bag (a full disk, an unreadable payload file)."""

    def __init__(self, transfer_id: str, why: list[str]) -> None:
        super().__init__(f"转递 {transfer_id} 的转递包未能生成：{why[0]}",
                         f"the package of transfer {transfer_id} could not be made: {why[0]}", item=transfer_id)
