"""Whether a national record that keeps the schema is to be believed: the one rule the platform
applies as records arrive (national_platform/service.py) and a receiver as it reads them
(crossregion/feed.py), each with its own registry."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from transfer import registry
from transfer.signing import signature_valid

# A record whose step is older than this is not believed: a key retired (perhaps compromised)
# cannot sign records backdated to when it was valid, beyond this window.
MAX_AGE = dt.timedelta(days=30)


class Doubt(NamedTuple):
    """Why a record is not believed."""

    code: str           # stale | signature
    message_zh: str
    message_en: str


def distrust(cur, record: dict, whose: str, whose_zh: str) -> Doubt | None:
    """Why `record` is not believed, None when it is: its step within MAX_AGE, its signature
    verified with the key the registry on `cur` (`whose`: "the platform's", "our") holds for the
    sender, valid at the step's time."""
    changed = dt.datetime.fromisoformat(record["changed_at"])
    if changed < dt.datetime.now(dt.UTC) - MAX_AGE:
        return Doubt("stale", f"记录所述步骤早于 {MAX_AGE.days} 天",
                     f"the record's step is older than {MAX_AGE.days} days: no key is trusted for it any more")
    sender, kid = record["sender"]["code"], str(record["signature"].get("key_id", ""))
    key = registry.key_at(cur, sender, kid, changed)
    if key is None or not signature_valid(record, key.public_key):
        return Doubt("signature", f"签名无法用{whose_zh}登记的 {sender} 公钥验证（密钥 {kid}）",
                f"the signature does not verify with a key {whose} registry holds for {sender} (key {kid})")
    return None
