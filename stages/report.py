"""The batch report: what was handed in, what went on, what was refused and why.

JSON for machines; a Chinese-first HTML page for archive staff, one row per file with its
status and every finding in both languages.
"""

from __future__ import annotations

import html
from collections import Counter

from catalog.idnumber import masked_data
from errors import NotFound
from stages.services import Services

STATUS_ZH = {"accepted": "已接收", "rejected": "已拒收", "received": "已收到", "warning": "有警告", "ignored": "已忽略"}
SEVERITY_ZH = {"error": "错误", "warning": "警告"}


def batch_report(batch_id: str, services: Services, agency: str | None = None) -> dict:
    """The batch's report; NotFound for another agency's batch (`agency` given) as for none."""
    with services.db.transaction() as cur:
        cur.execute("SELECT batch_id, name, status, submitted_at, holding_agency, catalog, findings FROM batches"
                    " WHERE batch_id = %s AND (%s::text IS NULL OR holding_agency = %s)", (batch_id, agency, agency))
        batch = cur.fetchone()
        if batch is None:
            raise NotFound(f"没有批次 {batch_id}", f"batch {batch_id} is unknown", item=batch_id)
        cur.execute("SELECT path, role, status, media_type, page_count, dpi, skew_degrees, bytes, sha256"
                    " FROM batch_files WHERE batch_id = %s ORDER BY path", (batch_id,))
        files = cur.fetchall()
    findings = batch["findings"] or []
    by_item: dict[str, list[dict]] = {}
    for f in findings:
        by_item.setdefault(f["item"], []).append(f)
    rows = []
    for f in files:
        own = by_item.get(f["path"], [])
        status = "ignored" if f["role"] == "ignored" else f["status"]
        if status == "accepted" and own:
            status = "warning"
        rows.append({**{k: f[k] for k in ("path", "role", "media_type", "page_count", "dpi", "skew_degrees", "bytes",
                                       "sha256")},
                     "status": status, "findings": own})
    counts = Counter(r["status"] for r in rows if r["role"] == "page")
    catalog = batch["catalog"] or {"files": []}
    refused: dict[str, dict] = {}  # the first reason each refused item was given
    for f in findings:
        if f["severity"] == "error":
            refused.setdefault(f["item"], f)
    return masked_data({
        "batch_id": batch["batch_id"], "name": batch["name"], "status": batch["status"],
        "submitted_at": batch["submitted_at"].isoformat(), "holding_agency": batch["holding_agency"],
        "counts": {"accepted": counts["accepted"], "warned": counts["warning"], "rejected": counts["rejected"],
                   "files_in_catalog": len(catalog["files"]),
                   "materials_going_on": sum(len(p["materials"]) for p in catalog["files"]),
                   "refused_items": len(refused), "warnings": sum(1 for f in findings if f["severity"] == "warning"),
                   "findings": len(findings)},
        "refused": list(refused.values()),
        "files": rows,
        "other_findings": [f for f in findings if f["item"] not in {r["path"] for r in rows}],
    })


def report_html(report: dict) -> str:
    e = html.escape
    c = report["counts"]

    def finding_list(items: list[dict]) -> str:
        return "".join(f'<li class="{e(f["severity"])}">[{SEVERITY_ZH.get(f["severity"], f["severity"])}] '
                       f'{e(f["message_zh"])}<br><small>{e(f["message_en"])} ({e(f["code"])})</small></li>'
                       for f in items)

    rows = "".join(
        f'<tr class="{e(r["status"])}"><td>{e(r["path"])}</td><td>{STATUS_ZH.get(r["status"], r["status"])}</td>'
        f'<td>{e(r["media_type"] or "")}</td><td>{r["page_count"] or ""}</td><td>{r["dpi"] or ""}</td>'
        f'<td>{"" if r["skew_degrees"] is None else format(r["skew_degrees"], ".1f") + "°"}</td>'
        f'<td><ul>{finding_list(r["findings"])}</ul></td></tr>' for r in report["files"])
    other = finding_list(report["other_findings"])
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>批次报告 {e(report["batch_id"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;vertical-align:top}}tr.rejected{{background:#fde2e2}}tr.warning{{background:#fff6d6}}
li.error{{color:#a00}}small{{color:#555}}</style></head><body>
<h1>批次报告 / Batch report</h1>
<p>批次 / batch: <b>{e(report["batch_id"])}</b>（{e(report["name"])}），状态 / status: {e(report["status"])}，
提交于 / handed in {e(report["submitted_at"])}，{e(report["holding_agency"])}</p>
<p>接收 / accepted <b>{c["accepted"]}</b>，警告 / warned <b>{c["warned"]}</b>，拒收 / rejected
<b>{c["rejected"]}</b>；继续处理的材料 / materials going on: <b>{c["materials_going_on"]}</b>
（{c["files_in_catalog"]} 份档案 / files）</p>
<h2>目录与批次问题 / Catalog and batch findings</h2><ul>{other or "<li>无 / none</li>"}</ul>
<h2>文件 / Files</h2><table><tr><th>文件 / file</th><th>状态 / status</th><th>格式 / format</th>
<th>页数 / pages</th><th>dpi</th><th>倾斜 / skew</th><th>问题 / findings</th></tr>{rows}</table></body></html>
"""
