"""The agency registry: every agency's code, name, province, pull-API endpoint and public signing
keys with their validity. It, never a record, is what a signature is checked against.

Importable from JSON, as the national platform or an administrator distributes it:

    {"agencies": [{"code": "440000", "name": "广东省人才交流服务中心", "province": "广东省",
                   "endpoint": "https://gd.example/", "keys": [{"key_id": "gd-2026", "algorithm": "Ed25519",
                   "public_key": "<base64 raw>", "valid_from": "2026-01-01T00:00:00+00:00", "valid_until": null}]}]}
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from errors import BadInput, NotFound


@dataclass(frozen=True)
class Agency:
    code: str
    name: str
    province: str
    endpoint: str


@dataclass(frozen=True)
class AgencyKey:
    agency: str
    key_id: str
    algorithm: str
    public_key: bytes
    valid_from: dt.datetime
    valid_until: dt.datetime | None


def agency(cur, code: str) -> Agency:
    cur.execute("SELECT code, name, province, endpoint FROM agencies WHERE code = %s", (code,))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"机构 {code} 未登记", f"agency {code} is not in the registry", item=code)
    return Agency(**row)


def agencies(cur) -> list[Agency]:
    cur.execute("SELECT code, name, province, endpoint FROM agencies ORDER BY code")
    return [Agency(**r) for r in cur.fetchall()]


def add_agency(cur, code: str, name: str, province: str = "", endpoint: str = "") -> None:
    cur.execute("INSERT INTO agencies (code, name, province, endpoint) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, province = EXCLUDED.province,"
                " endpoint = EXCLUDED.endpoint", (code, name, province, endpoint))


def add_key(cur, code: str, key_id: str, public_key: bytes, valid_from: dt.datetime,
            valid_until: dt.datetime | None = None, algorithm: str = "Ed25519") -> None:
    if algorithm != "Ed25519" or len(public_key) != 32:
        raise BadInput("公钥应为 32 字节的 Ed25519 公钥", "a public key must be a 32-byte Ed25519 key", item=key_id)
    agency(cur, code)
    cur.execute("INSERT INTO agency_keys (agency, key_id, algorithm, public_key, valid_from, valid_until)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (agency, key_id) DO UPDATE SET"
                " valid_until = EXCLUDED.valid_until",
                (code, key_id, algorithm, base64.b64encode(public_key).decode(), valid_from, valid_until))


def key_at(cur, code: str, key_id: str, at: dt.datetime) -> AgencyKey | None:
    """The key the registry holds for `code` under `key_id`, if valid at `at`."""
    cur.execute("SELECT * FROM agency_keys WHERE agency = %s AND key_id = %s AND valid_from <= %s"
                " AND (valid_until IS NULL OR valid_until > %s)", (code, key_id, at, at))
    row = cur.fetchone()
    if row is None:
        return None
    return AgencyKey(row["agency"], row["key_id"], row["algorithm"], base64.b64decode(row["public_key"]),
                     row["valid_from"], row["valid_until"])


def keys(cur, code: str) -> list[AgencyKey]:
    cur.execute("SELECT * FROM agency_keys WHERE agency = %s ORDER BY valid_from", (code,))
    return [AgencyKey(r["agency"], r["key_id"], r["algorithm"], base64.b64decode(r["public_key"]), r["valid_from"],
                      r["valid_until"]) for r in cur.fetchall()]


def import_json(cur, path: Path) -> int:
    """Adds or updates every agency (and its keys) of a registry file; returns how many."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = data["agencies"]
        for a in entries:
            add_agency(cur, a["code"], a["name"], a.get("province", ""), a.get("endpoint", ""))
            for k in a.get("keys", []):
                add_key(cur, a["code"], k["key_id"], base64.b64decode(k["public_key"]),
                        dt.datetime.fromisoformat(k["valid_from"]),
                        dt.datetime.fromisoformat(k["valid_until"]) if k.get("valid_until") else None,
                        k.get("algorithm", "Ed25519"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"机构登记文件 {path} 无法读取：{exc}", f"registry file {path} cannot be read: {exc}",
                       item=str(path)) from exc
    return len(entries)


def export_json(cur) -> dict:
    return {"agencies": [{**a.__dict__, "keys": [
        {"key_id": k.key_id, "algorithm": k.algorithm, "public_key": base64.b64encode(k.public_key).decode(),
         "valid_from": k.valid_from.isoformat(), "valid_until": k.valid_until.isoformat() if k.valid_until else None}
        for k in keys(cur, a.code)]} for a in agencies(cur)]}
