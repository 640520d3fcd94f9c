"use strict";
// The file view: catalog by category, each material's pages (image and OCR text) and PDF, the
// file's versions and events. Every look is recorded by the server.
const fileNumber = decodeURIComponent(location.pathname.split("/").pop());
const base = "/api/files/" + encodeURIComponent(fileNumber);

async function reveal() {
  const res = await api(base + "/id-number", {method: "POST"});
  const body = await res.json().catch(() => ({}));
  $("id").textContent = res.ok ? body.id_number : (body.detail || res.status);
}

async function load() {
  const res = await api(base);
  const f = await res.json().catch(() => ({}));
  if (!res.ok) { $("message").textContent = f.detail || res.status; $("message").className = "error"; return; }
  document.title = f.file_number + " " + f.name;
  $("title").innerHTML = esc(f.file_number) + " " + esc(f.name) + " <small>人事档案 / personnel file</small>";
  $("person").innerHTML = '身份证号 / ID number: <span id="id">' + esc(f.id_masked) +
    '</span> <button id="reveal" type="button">显示完整号码（将被记录）/ show in full (recorded)</button>';
  $("reveal").addEventListener("click", reveal);
  for (const c of f.categories) {
    const section = document.createElement("section");
    section.innerHTML = "<h2>第 " + esc(c.class) + " 类 " + esc(c.category) + "</h2>";
    for (const m of c.materials) {
      const div = document.createElement("div");
      div.className = "material";
      div.innerHTML = "<h3>" + esc(m.code) + " " + esc(m.title) + " <small>" + esc(m.formed) + " · " + m.page_count +
        " 页 · v" + m.version + "</small></h3>" + (m.has_pdf ? '<a class="pdf" href="' + base + "/materials/" +
        m.material_id + '/pdf">下载 PDF / download PDF</a>' : "<small>PDF 尚未生成 / no PDF yet</small>");
      for (const p of m.pages) {
        const page = document.createElement("details");
        page.className = "page";
        page.innerHTML = "<summary>第 " + p.page_no + " 页 / page " + p.page_no + "</summary>";
        page.addEventListener("toggle", () => {  // images are fetched (and recorded) when opened
          if (page.open && !page.querySelector("img")) {
            page.insertAdjacentHTML("beforeend", '<img alt="第 ' + p.page_no + ' 页" src="' + base + "/pages/" +
              p.page_id + '/image"><pre>' + esc(p.text) + "</pre>");
          }
        });
        div.appendChild(page);
      }
      section.appendChild(div);
    }
    $("catalog").appendChild(section);
  }
  const versions = $("versions").tBodies[0];
  for (const v of f.versions) {
    const row = versions.insertRow();
    [v.material, "v" + v.version, v.title, v.batch_id, v.current ? "现行 / current" : "已替代 / superseded " +
      (v.superseded_by || "")].forEach((t) => cell(row, esc(t)));
  }
  const events = $("events").tBodies[0];
  for (const e of f.events) {
    const row = events.insertRow();
    [new Date(e.at).toLocaleString("zh-CN"), e.event_type, e.outcome, e.batch_id].forEach((t) => cell(row, esc(t)));
  }
}

async function transfers() {
  // 发起转递: shown to those who may send; the file's own transfers above the form
  const who = await (await api("/api/session")).json();
  if (!who.permissions.includes("transfers:request")) return;
  $("transfer").hidden = false;
  const agencies = (await (await api("/api/agencies")).json()).agencies || [];
  $("receiver").innerHTML = agencies.map((a) => '<option value="' + esc(a.code) + '">' + esc(a.name) + " (" +
    esc(a.code) + ")</option>").join("");
  const listed = await (await api("/api/transfers?file=" + encodeURIComponent(fileNumber))).json();
  $("transfers-of-file").innerHTML = (listed.transfers || []).map((t) => "<p>" + esc(t.status_zh) + " → " +
    esc(t.receiving_agency) + " · " + new Date(t.updated_at).toLocaleString("zh-CN") +
    (t.overdue ? ' <strong class="error">回执逾期 / receipt overdue</strong>' : "") +
    ' <a href="/transfers#' + esc(t.transfer_id) + '">详情 / details</a></p>').join("");
  $("transfer-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const res = await api(base + "/transfers", {method: "POST", body: new FormData(ev.target)});
    const body = await res.json().catch(() => ({}));
    $("transfer-message").className = res.ok ? "" : "error";
    $("transfer-message").textContent = res.ok ? "已申请转递 / transfer requested: " + body.transfer_id +
      "（正在打包 / being packaged）" : (body.message_zh || body.detail || res.status);
  });
}
document.addEventListener("DOMContentLoaded", load);
document.addEventListener("DOMContentLoaded", transfers);
