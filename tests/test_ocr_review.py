"""A page that fails the OCR quality gates (ocr/gates.py), handed in with a good one and run
through Dagster on real PostgreSQL, S3 over HTTP and real OCR (RapidOCR, then tesseract as the
fallback): the ocr asset's check fails naming that page and no other, and the page is listed
for a person to review, never passed silently."""

import io
import random
import shutil

import dagster as dg
from PIL import Image, ImageDraw

from catalog.manifest import TEMPLATE_HEADER
from pipeline.assets import GATE_CHECKS
from pipeline.runner import run_batch
from stages.submit import submit_folder
from storage.objects import sha256_hex
from tests.conftest import SAMPLE_BATCH, token, web_client
from tests.test_pipeline_e2e import resources_for

GOOD, BAD = "pages/GZ-R1-0001.jpg", "pages/GZ-R1-0002.jpg"


def _scribbled_page() -> bytes:
    """An A4 page at 300 dpi with ink all over it and no text: nothing an engine can read."""
    img = Image.new("L", (2480, 3508), 255)
    draw, rng = ImageDraw.Draw(img), random.Random(3)
    for _ in range(400):
        draw.line([(rng.randrange(2480), rng.randrange(3508)) for _ in range(2)], fill=0, width=8)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85, dpi=(300, 300))
    return buf.getvalue()


def test_a_page_failing_a_gate_fails_the_ocr_check_by_name_and_is_listed_for_review(tmp_path, services):
    folder = tmp_path / "GZ-R1-review"
    (folder / "pages").mkdir(parents=True)
    shutil.copy(sorted(SAMPLE_BATCH.glob("pages/*.jpg"))[0], folder / GOOD)  # a clean form: passes
    (folder / BAD).write_bytes(_scribbled_page())
    rows = [["GZ-R1", "张三", "11010519491231002X", "9-1", str(seq), "工资审批表", f"199{seq}-03-01", "1", "1", "",
             page] for seq, page in ((1, GOOD), (2, BAD))]
    (folder / "manifest.csv").write_text("\n".join(",".join(r) for r in [TEMPLATE_HEADER, *rows]) + "\n",
                                         encoding="utf-8")
    batch = submit_folder(folder, services).batch_id

    with dg.DagsterInstance.ephemeral() as instance:
        result = run_batch(batch, resources_for(services, tmp_path / "signing.pem"), instance)
    assert result.success  # a failed check is reported, it does not stop the batch

    # the asset checks: the ones that fail name the page, and only it
    checks = {c.check_name: c for c in result.get_asset_check_evaluations() if c.asset_key == dg.AssetKey("ocr")}
    assert set(checks) == {name for name, _ in GATE_CHECKS.values()}
    failed = {name for name, c in checks.items() if not c.passed}
    assert failed, {name: c.metadata for name, c in checks.items()}
    for name, c in checks.items():
        pages, count = c.metadata["pages"].value, c.metadata["count"].value
        assert (pages, count) == ((f"{BAD}#1", 1) if name in failed else ("none", 0)), name
        assert c.severity == dg.AssetCheckSeverity.ERROR

    # the review list: the ocr asset's, and the scan's OCR event the staff file page shows
    ocr_meta = next(ev.materialization.metadata for ev in result.get_asset_materialization_events()
                    if ev.materialization.asset_key == dg.AssetKey("ocr"))
    assert ocr_meta["review_pages"].value == f"{BAD}#1"
    assert ocr_meta["fallback_pages"].value >= 1  # the fallback engine was tried on it first
    gate_of = {name: gate for gate, (name, _) in GATE_CHECKS.items()}
    client = web_client(services, token(services, ["files:read"], services.agency))
    view = client.get("/api/files/GZ-R1")
    assert view.status_code == 200, view.text
    ocr_events = {e["object_sha256"]: e for e in view.json()["events"] if e["event_type"] == "ocr"}
    bad, good = sha256_hex((folder / BAD).read_bytes()), sha256_hex((folder / GOOD).read_bytes())
    assert ocr_events[bad]["outcome"] == "warning"
    assert ocr_events[bad]["detail"]["review"] == sorted(gate_of[name] for name in failed)
    assert ocr_events[good]["outcome"] == "success" and ocr_events[good]["detail"]["review"] == []
