"use strict";
// Transfers of this agency, sent and received: each one's state, the late receipts marked, its
// steps with their times, and cancelling one the receiver has not fetched yet.
const ACTIVE = ["requested", "packaged", "available", "fetched"];

async function detail(id) {
  const res = await api("/api/transfers/" + encodeURIComponent(id));
  const t = await res.json().catch(() => ({}));
  if (!res.ok) { $("message").textContent = t.detail || res.status; return; }
  $("detail").hidden = false;
  $("detail-title").textContent = t.file_number + " " + t.name + " → " + t.receiving_agency_name + "：" + t.status_zh;
  const body = $("steps").tBodies[0];
  body.innerHTML = "";
  for (const s of t.steps) {
    const row = body.insertRow();
    [new Date(s.at).toLocaleString("zh-CN"), s.status_zh, s.status,
     (s.detail.failed_checks || []).join(", ")].forEach((x) => cell(row, esc(x)));
  }
  $("detail-receipt").textContent = t.receipt ? JSON.stringify(t.receipt.failed_checks || t.receipt.outcome, null, 1)
    : "";
  const national = $("platform").tBodies[0];
  national.innerHTML = "";
  for (const p of t.platform || []) {
    const row = national.insertRow();
    if (p.state === "failed") row.className = "error";
    [p.sequence, p.status, PLATFORM_ZH[p.state] || p.state, p.attempts,
     p.delivered_at ? new Date(p.delivered_at).toLocaleString("zh-CN") : "", p.failure || ""]
      .forEach((x) => cell(row, esc(x)));
  }
}
const PLATFORM_ZH = {pending: "待报送 / pending", delivered: "已报送 / delivered",
                     failed: "平台拒收 / refused"};

async function cancel(id) {
  if (!confirm("撤销该转递？/ Cancel this transfer?")) return;
  const res = await api("/api/transfers/" + encodeURIComponent(id) + "/cancel", {method: "POST"});
  const body = await res.json().catch(() => ({}));
  $("message").textContent = res.ok ? "已撤销 / cancelled" : (body.message_zh || body.detail || res.status);
  load();
}

async function table(direction) {
  const res = await api("/api/transfers?direction=" + direction, {}, true);
  const listed = await res.json().catch(() => ({transfers: []}));
  const body = $(direction).tBodies[0];
  body.innerHTML = "";
  for (const t of listed.transfers || []) {
    const row = body.insertRow();
    if (t.overdue && ACTIVE.includes(t.status)) row.className = "error";
    cell(row, '<a href="/files/' + encodeURIComponent(t.file_number) + '">' + esc(t.file_number) + "</a>");
    cell(row, esc(direction === "outgoing" ? t.receiving_agency : t.sending_agency));
    if (t.platform_state === "failed") row.className = "error";
    cell(row, esc(t.status_zh) + (t.overdue && ACTIVE.includes(t.status) ? "（回执逾期 / receipt overdue）" : "")
      + (t.platform_state === "failed" ? "（全国平台拒收：" + esc(t.platform_failure || "") + "）" : ""));
    cell(row, esc(new Date(t.updated_at).toLocaleString("zh-CN")));
    cell(row, esc(t.handler));
    const actions = cell(row, "");
    const more = document.createElement("button");
    more.type = "button";
    more.textContent = "步骤 / steps";
    more.addEventListener("click", () => detail(t.transfer_id));
    actions.appendChild(more);
    if (direction === "outgoing" && ["requested", "packaged", "available"].includes(t.status)) {
      const stop = document.createElement("button");
      stop.type = "button";
      stop.textContent = "撤销 / cancel";
      stop.addEventListener("click", () => cancel(t.transfer_id));
      actions.appendChild(stop);
    }
  }
}

function load() { table("outgoing"); table("incoming"); }
document.addEventListener("DOMContentLoaded", () => {
  load();
  if (location.hash.length > 1) detail(location.hash.slice(1));
  setInterval(load, 10000);  // states move on their own (packaging, the receiver's receipt)
});
