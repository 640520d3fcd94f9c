"""The receipt (回执): what the receiving agency signs and posts back once it has verified a
transfer, saying what it received (outcome `received`) or why it refused it (`rejected`, every
failed check named). Canonical JSON (RFC 8785) signed with the receiver's Ed25519 key; the
sender checks it against the key its registry holds for the receiver."""

from __future__ import annotations

import datetime as dt
import uuid

from errors import BadInput
from transfer import registry
from transfer.signing import Signer, signature_valid

SCHEMA = "personnel-archive/transfer-receipt"
OUTCOMES = ("received", "rejected")


class BadReceipt(BadInput):
    """A receipt that is malformed, not this transfer's, or not signed by its receiver."""


def build_receipt(signer: Signer, *, record: dict, transfer_id: str, receiver: str, outcome: str,
                  checks: list[dict], package_sha256: str | None, now: dt.datetime | None = None) -> dict:
    """`record` as the receiver got it (possibly forged: its ids are echoed, not trusted)."""
    file = record.get("file") or {}
    failed = [c for c in checks if c.get("passed") is False]
    return signer.sign({
        "schema": SCHEMA, "receipt_id": str(uuid.uuid4()), "transfer_id": transfer_id,
        "record_id": str(record.get("record_id", "")), "sender": (record.get("sender") or {}).get("code", ""),
        "receiver": receiver, "outcome": outcome,
        "at": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        "package_sha256": package_sha256, "file_number": file.get("file_number", ""),
        "material_count": file.get("material_count"), "page_count": file.get("page_count"),
        "failed_checks": [{k: c[k] for k in ("property", "code", "message_zh", "message_en")} for c in failed],
    })


def check_receipt(cur, receipt: dict, transfer: dict) -> None:
    """Raises BadReceipt unless `receipt` is a well-formed receipt of `transfer` (a row of
    `transfers`), signed by its receiving agency with a key the registry holds for it."""
    def bad(zh: str, en: str) -> BadReceipt:
        return BadReceipt(f"回执无效：{zh}", f"receipt refused: {en}", item=str(transfer["transfer_id"]))

    if not isinstance(receipt, dict) or receipt.get("schema") != SCHEMA:
        raise bad("格式不对", "not a transfer receipt")
    if not isinstance(receipt.get("receipt_id"), str) or not receipt["receipt_id"]:
        raise bad("缺少回执编号", "it has no receipt_id")
    if receipt.get("outcome") not in OUTCOMES:
        raise bad("结果应为 received 或 rejected", "outcome must be received or rejected")
    if receipt.get("transfer_id") != str(transfer["transfer_id"]) or receipt.get("receiver") != \
            transfer["receiving_agency"]:
        raise bad("不是本次转递的回执", "it names another transfer or receiver")
    if receipt["outcome"] == "received" and (receipt.get("record_id") != str(transfer["record_id"])
                                             or receipt.get("package_sha256") != transfer["package_sha256"]):
        raise bad("所述记录或转递包与本次转递不符", "its record or package is not this transfer's")
    named = receipt.get("failed_checks")
    if not isinstance(named, list) or not all(isinstance(c, dict) and isinstance(c.get("code"), str) for c in named):
        raise bad("未通过的检查项格式不对", "failed_checks must be a list of checks, each with its code")
    if receipt["outcome"] == "rejected" and not named:
        raise bad("拒收须列明未通过的检查项", "a rejection must name the checks that failed")
    try:
        at = dt.datetime.fromisoformat(receipt["at"])
    except (KeyError, TypeError, ValueError):
        raise bad("时间无效", "its time is not a time") from None
    if at.tzinfo is None:
        raise bad("时间须带时区", "its time must carry a time zone")
    now, skew = dt.datetime.now(dt.UTC), dt.timedelta(minutes=5)
    # the key is chosen by the receipt's own time: it must be now, not a time a retired key was valid
    if not transfer["created_at"] - skew <= at <= now + skew:
        raise bad("时间不在本次转递期间", "its time is not within this transfer's life")
    if transfer.get("expires_at") and transfer["expires_at"] <= now:
        raise bad("转递记录已过期，不再接受回执", "the transfer's record has expired: no receipt is taken any more")
    sig = receipt.get("signature") or {}
    key = registry.key_at(cur, transfer["receiving_agency"], str(sig.get("key_id", "")), at)
    if key is None or not signature_valid(receipt, key.public_key):
        raise bad("签名无法用登记的接收方公钥验证", "its signature does not verify with a key the registry holds for "
                  "the receiver")
