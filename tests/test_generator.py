"""The sample generator: deterministic, valid catalog, realistic IDs, degraded variants."""

import hashlib

from PIL import Image

from catalog import idnumber
from catalog.manifest import parse_manifest
from sample_scans.generate import generate


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path):
    a = generate(tmp_path / "a", files=2, seed=3, variants=["clean", "skew", "dpi200"], materials_per_file=2)
    b = generate(tmp_path / "b", files=2, seed=3, variants=["clean", "skew", "dpi200"], materials_per_file=2)
    assert _digests(a) == _digests(b)
    assert _digests(a.parent / "truth") == _digests(b.parent / "truth")
    c = generate(tmp_path / "c", files=2, seed=4, variants=["clean"], materials_per_file=2)
    assert _digests(a) != _digests(c)


def test_catalog_valid_and_pages_match(tmp_path):
    batch = generate(tmp_path, files=3, seed=11, variants=["clean", "dpi200", "noise"], materials_per_file=3)
    catalog, findings = parse_manifest((batch / "manifest.csv").read_bytes())
    assert findings == []
    assert len(catalog.files) == 3
    classes = {m.class_code for f in catalog.files for m in f.materials}
    assert "1" in classes and len(classes) >= 3
    for f in catalog.files:
        assert idnumber.validate(f.id_number) is None
        for m in f.materials:
            for name in m.page_files:
                assert (batch / name).exists()
                assert (tmp_path / "truth" / f"{name.split('/')[-1].rsplit('.', 1)[0]}.txt").read_text().strip()
    dpis = {Image.open(p).info["dpi"][0] for p in batch.glob("pages/*")}
    assert {round(d) for d in dpis} == {200, 300}
