"use strict";
// Search this agency's files; each hit opens the file view.
async function run(event) {
  event.preventDefault();
  const params = new URLSearchParams({q: $("q").value.trim(), limit: "50"});
  if ($("class").value.trim()) params.set("class", $("class").value.trim());
  const res = await api("/api/search?" + params);
  const body = await res.json().catch(() => ({}));
  $("hits").innerHTML = "";
  if (!res.ok) { $("message").textContent = body.detail || res.status; $("message").className = "error"; return; }
  $("message").className = "";
  $("message").textContent = body.hits.length ? "共 " + body.hits.length + " 条 / hits" +
    (body.truncated ? "（匹配过多，请加筛选条件 / too many matches: narrow the search）" : "") : "没有找到 / nothing found";
  for (const h of body.hits) {
    const div = document.createElement("div");
    div.className = "hit";
    const where = h.material ? " · " + esc(h.material) + " " + esc(h.title) + " 第 " + h.page_no + " 页" : "";
    div.innerHTML = '<a class="file" href="/files/' + encodeURIComponent(h.file_number) + '">' + esc(h.file_number) +
      " " + esc(h.name) + "</a> <small>" + esc(h.id_masked) + "</small>" + where +
      ' <a class="transfer" href="/files/' + encodeURIComponent(h.file_number) + '#transfer">发起转递 / transfer</a>' +
      (h.snippet ? '<div class="snippet">' + esc(h.snippet) + "</div>" : "");
    $("hits").appendChild(div);
  }
}
document.addEventListener("DOMContentLoaded", () => $("search").addEventListener("submit", run));
