"""The OCR stage's cache: keyed by page sha256 and engine settings, a rerun calls no engine."""

import shutil

import pytest

import stages.ocr as ocr_stage
from ocr import EngineConfig
from stages.intake import intake_batch
from stages.submit import submit_folder
from tests.conftest import SAMPLE_BATCH


class EngineMustNotRun:
    def __init__(self, *args, **kwargs):
        raise AssertionError("the OCR engine was started although every page is cached")


def test_rerun_hits_the_cache_and_starts_no_engine(tmp_path, services, monkeypatch):
    folder = tmp_path / "one-page"
    (folder / "pages").mkdir(parents=True)
    page = sorted(SAMPLE_BATCH.glob("pages/*.jpg"))[2]
    shutil.copy(page, folder / "pages" / page.name)
    (folder / "manifest.csv").write_text(
        "档号,姓名,身份证号,类号,序号,材料名称,形成时间,份数,页数,备注,页面文件\n"
        f"GZ-C1,张三,11010519491231002X,9-1,1,工资审批表,1996-03-01,1,1,,pages/{page.name}\n", encoding="utf-8")
    batch = submit_folder(folder, services).batch_id
    intake_batch(batch, services)
    first = ocr_stage.ocr_batch(batch, services, workers=1)
    assert (first.files_ocred, first.files_cached, first.pages_ocred) == (1, 0, 1)

    monkeypatch.setattr(ocr_stage, "OcrPool", EngineMustNotRun)
    again = ocr_stage.ocr_batch(batch, services, workers=1)
    assert (again.files_ocred, again.files_cached, again.pages_ocred) == (0, 1, 0)
    # another engine setting is another cache entry: it would run
    with pytest.raises(AssertionError, match="engine was started"):
        ocr_stage.ocr_batch(batch, services, EngineConfig(det_side=960), workers=1)
