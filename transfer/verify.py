"""The receiving agency's checks of a fetched transfer: is the record signed by its sender (with
the key this agency's registry holds for it, valid when it was signed), addressed to us, not
expired, not seen before; is the package the one the record names, a valid bag whose
tag manifest is the one signed; do its counts equal the notice; does it pass the four-property
checks. Every check is reported, passed or failed with its reason: a rejection names them.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import bagit

from storage.objects import file_sha256
from transfer import registry
from transfer.fourprops import Check, check_payload, failed
from transfer.record import SCHEMA
from transfer.signing import signature_valid

RECORD_FIELDS = ("record_id", "transfer_id", "nonce", "sender", "receiver", "file", "notice", "package",
                 "created_at", "expires_at", "signature")


@dataclass
class Verification:
    transfer_id: str
    record: dict
    checks: list[Check]
    bag_dir: Path | None        # the extracted bag, when it could be extracted
    package_sha256: str

    @property
    def failed(self) -> list[Check]:
        return failed(self.checks)

    @property
    def ok(self) -> bool:
        return not self.failed


def _time(value) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return t if t.tzinfo else None


def record_checks(cur, record: dict, listed_id: str, me: str, now: dt.datetime, max_days: int = 15) -> list[Check]:
    """The record's own checks: form, signature against the registry, addressee, expiry, replay.
    A record claims its own signing time, so it must also be recent and live no longer than
    `max_days`: a retired key cannot sign a backdated record that lives for ever."""
    out: list[Check] = []

    def check(prop: str, code: str, passed: bool, zh: str, en: str) -> None:
        out.append(Check(prop, code, passed, zh, en))

    missing = [f for f in RECORD_FIELDS if f not in record] if isinstance(record, dict) else list(RECORD_FIELDS)
    if missing or record.get("schema") != SCHEMA:
        check("authenticity", "record_form", False, f"转递记录格式不对（缺少 {missing[:3]}）",
              f"not a transfer record (missing {missing[:3]})")
        return out
    check("authenticity", "record_form", True, "转递记录格式正确", "a well-formed transfer record")
    sender = str((record["sender"] or {}).get("code", ""))
    created = _time(record["created_at"])
    sig = record.get("signature") or {}
    key = registry.key_at(cur, sender, str(sig.get("key_id", "")), created) if created else None
    valid = key is not None and signature_valid(record, key.public_key)
    check("authenticity", "signature", valid,
          f"签名经登记的 {sender} 公钥（{key.key_id}）验证有效" if valid else
          (f"签名无效：登记中没有 {sender} 在签名时有效的公钥 {sig.get('key_id')}" if key is None
           else "签名无效：记录内容与签名不符"),
          f"signature valid with {sender}'s registered key {key.key_id}" if valid else
          (f"signature invalid: the registry holds no key {sig.get('key_id')} of {sender} valid when it was signed"
           if key is None else "signature invalid: the record does not match its signature"))
    receiver = str((record["receiver"] or {}).get("code", ""))
    check("authenticity", "receiver", receiver == me,
          "接收方是本机构" if receiver == me else f"记录的接收方是 {receiver}，不是本机构 {me}",
          "addressed to this agency" if receiver == me else f"addressed to {receiver}, not to this agency {me}")
    expires = _time(record["expires_at"])
    live = (expires is not None and created is not None and created <= now + dt.timedelta(minutes=5)
            and now < expires and created >= now - dt.timedelta(days=max_days)
            and expires - created <= dt.timedelta(days=max_days))
    check("authenticity", "expiry", live,
          f"在有效期内（至 {record['expires_at']}）" if live
          else f"已过期或时间无效（有效期至 {record['expires_at']}）",
          f"within its validity (until {record['expires_at']})" if live
          else f"expired or its times are invalid (valid until {record['expires_at']})")
    # a record verified before whose receipt never reached the sender may be verified again
    cur.execute("SELECT outcome, verified_at FROM received_transfers WHERE record_id::text = %s"
                " AND outcome <> 'verified'", (str(record["record_id"]),))
    seen = cur.fetchone()
    when = f"{seen['verified_at']:%Y-%m-%d %H:%M}" if seen else ""
    check("security", "replay", seen is None,
          "此前未收到过该记录" if seen is None else f"该记录已于 {when} 收到过（重放）",
          "not seen before" if seen is None else f"this record was received before ({when}): a replay")
    same = str(record["transfer_id"]) == listed_id
    check("authenticity", "transfer_id", same, "记录与所取转递一致" if same else "记录属于另一次转递",
          "the record is the transfer's fetched" if same else "the record belongs to another transfer")
    return out


def extract(tar_path: Path, into: Path, transfer_id: str) -> Path:
    """The bag out of the tar, refusing anything but plain files and folders under one
    `<transfer id>/` folder (no links, devices, absolute paths or `..`); ValueError names the
    first member refused."""
    root = into / transfer_id
    with tarfile.open(tar_path, "r:") as tar:
        for member in tar:
            path = PurePosixPath(member.name)
            if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] != transfer_id:
                raise ValueError(f"member {member.name!r} is outside the bag")
            if not (member.isfile() or member.isdir()) or member.issparse():
                raise ValueError(f"member {member.name!r} is not a plain file or folder")
            target = into.joinpath(*path.parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            with open(target, "xb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    if not root.is_dir():
        raise ValueError("the tar holds no bag")
    return root


def _bag_checks(bag_dir: Path, record: dict) -> list[Check]:
    out: list[Check] = []
    try:
        bag = bagit.Bag(str(bag_dir))
        bag.validate(processes=1)
        out.append(Check("integrity", "bag_valid", True, "BagIt 包有效：清单与每个文件的摘要一致",
                         "a valid BagIt bag: every file as its manifest says"))
    except bagit.BagValidationError as exc:
        details = [str(d) for d in (exc.details or [])][:5] or [str(exc)]
        out.append(Check("integrity", "bag_valid", False, f"BagIt 包无效：{'；'.join(details)}",
                         f"not a valid BagIt bag: {'; '.join(details)}"))
        return out
    except bagit.BagError as exc:
        out.append(Check("integrity", "bag_valid", False, f"不是 BagIt 包：{exc}", f"not a BagIt bag: {exc}"))
        return out
    package = record.get("package") or {}
    tag = file_sha256(bag_dir / "tagmanifest-sha256.txt") if (bag_dir / "tagmanifest-sha256.txt").is_file() else ""
    same = tag == package.get("tagmanifest_sha256")
    out.append(Check("authenticity", "tagmanifest", same, "标签清单摘要与签名记录一致" if same else
                     "标签清单摘要与签名记录不符", "the tag manifest is the one signed" if same
                     else "the tag manifest differs from the one signed"))
    info = bag.info
    want = {"External-Identifier": str(record.get("transfer_id")), "Payload-Oxum": package.get("payload_oxum"),
            "Source-Organization": (record.get("sender") or {}).get("name")}
    wrong = [k for k, v in want.items() if info.get(k) != v]
    out.append(Check("authenticity", "bag_info", not wrong, "bag-info.txt 与记录一致" if not wrong else
                     f"bag-info.txt 的 {wrong} 与记录不符", "bag-info.txt agrees with the record" if not wrong
                     else f"bag-info.txt's {wrong} differ from the record"))
    notice = _read_json(bag_dir / "data" / "notice.json")
    same_notice = notice == record.get("notice")
    out.append(Check("authenticity", "notice", same_notice, "包内转递通知单与签名记录一致" if same_notice else
                     "包内转递通知单与签名记录不符", "the notice in the bag is the one signed" if same_notice
                     else "the notice in the bag differs from the one signed"))
    file = record.get("file") or {}
    person, catalog = _read_json(bag_dir / "data" / "person.json"), _read_json(bag_dir / "data" / "catalog.json")
    numbers = {str((d or {}).get("file_number")) for d in (person, catalog, notice)}
    same_file = numbers == {str(file.get("file_number"))} and (person or {}).get("id_masked") == file.get("id_masked")
    out.append(Check("authenticity", "file_identity", same_file, "包内档号、身份证号与签名记录一致" if same_file
                     else "包内档号或身份证号与签名记录不符", "the bag's file number and ID are the record's"
                     if same_file else "the bag's file number or ID differs from the record's"))
    counts = (file.get("material_count"), file.get("page_count")) == \
        ((record.get("notice") or {}).get("material_count"), (record.get("notice") or {}).get("page_count"))
    out.append(Check("integrity", "record_counts", counts, "记录的份数、页数与通知单一致" if counts else
                     "记录的份数、页数与通知单不一致", "the record's counts are the notice's" if counts
                     else "the record's counts differ from the notice's"))
    return out + check_payload(bag_dir / "data", record.get("notice"))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def verify_transfer(cur, record: dict, tar_path: Path, listed_id: str, me: str, workdir: Path,
                    now: dt.datetime | None = None, max_days: int = 15) -> Verification:
    """Every check of a fetched transfer; the bag is extracted under `workdir`, and only once
    the record's signature holds and the package is the one it signed."""
    now = now or dt.datetime.now(dt.UTC)
    checks = record_checks(cur, record, listed_id, me, now, max_days)
    digest = file_sha256(tar_path)
    if len(checks) == 1:  # not even a record: nothing to hold the package against
        return Verification(listed_id, record if isinstance(record, dict) else {}, checks, None, digest)
    signed = (record.get("package") or {}).get("sha256")
    checks.append(Check("integrity", "package_sha256", digest == signed,
                        "转递包的摘要与签名记录一致" if digest == signed
                        else "转递包的摘要与签名记录不符（内容被改动或下载不完整）",
                        "the package is the one signed" if digest == signed
                        else "the package's sha256 differs from the one signed (altered, or not all of it)"))
    if failed(checks):  # what nobody vouches for is not unpacked here
        checks.append(Check("security", "package_readable", None, "未解包：记录或转递包未通过上述检查",
                            "not unpacked: the record or the package failed the checks above"))
        return Verification(listed_id, record, checks, None, digest)
    try:
        bag_dir = extract(tar_path, workdir, listed_id)
    except (ValueError, OSError, tarfile.TarError) as exc:
        checks.append(Check("security", "package_readable", False, f"转递包无法安全解开：{exc}",
                            f"the package cannot be unpacked safely: {exc}"))
        return Verification(listed_id, record, checks, None, digest)
    checks.append(Check("security", "package_readable", True, "转递包只含普通文件和目录",
                        "the package holds plain files and folders only"))
    checks += _bag_checks(bag_dir, record)
    return Verification(listed_id, record, checks, bag_dir, digest)
