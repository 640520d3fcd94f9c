import datetime as dt

from catalog import idnumber
from catalog.categories import is_valid_class_code
from catalog.manifest import TEMPLATE_HEADER, normalise_date, parse_manifest

VALID_ID = "11010519491231002X"  # the published example of a valid number


def test_check_digit_and_validation():
    assert idnumber.check_digit(VALID_ID[:17]) == "X"
    assert idnumber.validate(VALID_ID) is None
    assert "check digit" in idnumber.validate(VALID_ID[:17] + "1")
    assert "birth date" in idnumber.validate("110105194913310021")
    assert "17 digits" in idnumber.validate("1101051949123")
    future = "110105" + (dt.date.today() + dt.timedelta(days=400)).strftime("%Y%m%d") + "002"
    assert "birth date" in idnumber.validate(future + idnumber.check_digit(future))


def test_mask_shows_first_six_and_last_four():
    assert idnumber.mask(VALID_ID) == "110105********002X"


def test_lookup_hash_is_keyed():
    assert idnumber.lookup_hash(VALID_ID, b"a") != idnumber.lookup_hash(VALID_ID, b"b")
    assert idnumber.lookup_hash(VALID_ID.lower(), b"a") == idnumber.lookup_hash(VALID_ID, b"a")


def test_class_codes():
    assert all(is_valid_class_code(c) for c in ["1", "2", "3", "4-1", "4-4", "7", "9-3", "10"])
    assert not any(is_valid_class_code(c) for c in ["4", "9", "11", "4-5", "0", ""])


def test_dates():
    assert normalise_date("1998-07-01") == "1998-07-01"
    assert normalise_date("1998.7") == "1998-07"
    assert normalise_date("1998年7月1日") == "1998-07-01"
    assert normalise_date("1998") == "1998"
    assert normalise_date("1998-02-30") is None
    assert normalise_date("sometime") is None


def _csv(*rows: list[str]) -> bytes:
    lines = [",".join(TEMPLATE_HEADER)] + [",".join(r) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def _row(**kw) -> list[str]:
    base = dict(file_number="GZ-1", name="张三", id_number=VALID_ID, class_code="1", seq="1", title="登记表",
                formed="2001-05-01", copies="1", pages="1", remarks="", page_files="pages/a.jpg")
    base.update(kw)
    return list(base.values())


def test_manifest_good_rows_go_on_past_bad_ones():
    data = _csv(_row(), _row(seq="2", page_files="pages/b.jpg;pages/c.jpg", pages="2"),
                _row(seq="3", id_number="110105194912310021"), _row(seq="4", class_code="4"),
                _row(seq="5", formed="2001-13-01"), _row(seq="1"))
    catalog, findings = parse_manifest(data)
    assert [m.code for m in catalog.files[0].materials] == ["1-1", "1-2"]
    assert catalog.files[0].materials[1].page_files == ["pages/b.jpg", "pages/c.jpg"]
    codes = sorted(f.code for f in findings)
    assert codes == ["manifest.class_code", "manifest.duplicate_material", "manifest.formed", "manifest.id_number"]
    id_finding = next(f for f in findings if f.code == "manifest.id_number")
    assert id_finding.item == "manifest.csv:4"
    assert VALID_ID[:17] not in str(id_finding)  # never unmasked in a message


def test_manifest_missing_columns_named_in_chinese():
    catalog, findings = parse_manifest("档号,姓名\nGZ-1,张三\n".encode())
    assert not catalog.files
    assert findings[0].code == "manifest.columns" and "身份证号" in findings[0].message_zh


def test_manifest_in_gbk_is_read_with_a_warning_and_garbage_is_refused():
    text = ",".join(TEMPLATE_HEADER) + "\nGZ-1,张三,11010519491231002X,4-1,1,登记表,2001-05-01,1,1,,p1.jpg\n"
    catalog, findings = parse_manifest(text.encode("gbk"))
    assert [f.code for f in findings] == ["manifest.encoding_gb18030"]
    assert catalog.files[0].name == "张三"
    _, findings = parse_manifest(b"\xff\xfe" + "档号".encode("utf-16-le"))
    assert [f.code for f in findings] == ["manifest.encoding"]
