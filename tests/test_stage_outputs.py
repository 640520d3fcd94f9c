"""Stages own their outputs: index and archive read the OCR results the ocr stage recorded, never
a key rebuilt from their own engine configuration."""

import dagster as dg
import pytest

from catalog.idnumber import mask_ids
from pipeline.assets import ASSETS
from pipeline.partitions import scan_batches
from pipeline.resources import OcrEngineResource
from stages.index import index_batch
from stages.intake import intake_batch
from stages.ocr import OcrNotDone, load_ocr, result_keys
from stages.submit import submit_folder
from tests.conftest import SAMPLE_BATCH, pipeline_resources


def _resources(services, engine: OcrEngineResource) -> dict:
    return pipeline_resources(services, ocr_engine=engine)


def test_engine_configured_otherwise_after_ocr_breaks_neither_index_nor_archive(services):
    batch = submit_folder(SAMPLE_BATCH, services).batch_id
    used, changed = OcrEngineResource(), OcrEngineResource(primary="tesseract", fallback="", lang="eng")
    assert used.engine_config().key != changed.engine_config().key
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(scan_batches.name, [batch])
        assert dg.materialize(ASSETS, selection=["intake", "ocr"], partition_key=batch, instance=instance,
                              resources=_resources(services, used)).success
        # the deployment's engine settings change before the later stages run
        later = dg.materialize(ASSETS, selection=["index", "archive"], partition_key=batch, instance=instance,
                               resources=_resources(services, changed), raise_on_error=False)
        assert later.success, [e.message for e in later.all_events if e.is_failure]

    keys = result_keys(services, batch)
    assert keys and all(f"ocr/{used.engine_config().key}/" in k for k in keys.values())
    results = {sha: load_ocr(services, key) for sha, key in keys.items()}
    with services.db.transaction() as cur:
        cur.execute("SELECT source_sha256, source_page, ocr_text, ocr_sha256 FROM pages")
        pages = cur.fetchall()
        cur.execute("SELECT sha256 FROM stored_objects WHERE role = 'ocr'")
        archived_ocr = {r["sha256"] for r in cur.fetchall()}
    assert len(pages) == sum(len(pages_of) for pages_of, _ in results.values())
    for p in pages:   # each page holds the text of the result the ocr stage made
        pages_of, result_sha = results[p["source_sha256"]]
        assert p["ocr_sha256"] == result_sha
        assert p["ocr_text"] == mask_ids(pages_of[p["source_page"]].text)
    assert archived_ocr == {sha for _, sha in results.values()}   # and those results are the ones preserved


def test_index_before_ocr_names_the_scan_and_waits(services):
    batch = submit_folder(SAMPLE_BATCH, services).batch_id
    intake_batch(batch, services)
    with pytest.raises(OcrNotDone) as raised:
        index_batch(batch, services)
    assert raised.value.exit_code == 3 and raised.value.item and "run the ocr stage first" in raised.value.message_en
    assert services.db.count("pages") == 0
