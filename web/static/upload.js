"use strict";
// The upload page: hand in a folder or a zip, follow this agency's batches through the stages.
const say = (text, kind) => { $("message").textContent = text; $("message").className = kind || ""; };
let highlight = null, timer = null;

function upload(event) {
  event.preventDefault();
  const picked = $("zip").files.length ? [...$("zip").files] : [...$("folder").files];
  if (!picked.length) { say("请先选择文件夹或压缩包 / choose a folder or a zip first", "error"); return; }
  const form = new FormData();
  for (const f of picked) form.append("files", f, f.webkitRelativePath || f.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/batches");
  $("progress").hidden = false; $("submit").disabled = true;
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) $("progress").value = e.loaded / e.total; };
  xhr.onload = () => {
    $("submit").disabled = false; $("progress").hidden = true;
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (e) { body = {detail: xhr.statusText}; }
    if (xhr.status >= 400) { say("上传失败 / upload failed: " + (body.detail || xhr.status), "error"); return; }
    highlight = body.batch_id;
    say((body.new ? "已登记批次 / batch registered: " : "此批次此前已上传 / handed in before: ") + body.batch_id +
        "（" + body.files + " 个文件 / files）", "ok");
    $("upload").reset();
    refresh();
  };
  xhr.onerror = () => { $("submit").disabled = false; say("网络错误，请重试 / network error, please retry", "error"); };
  xhr.send(form);
}


async function refresh() {
  clearTimeout(timer);
  let res;
  try { res = await api("/api/batches", {}, true); } catch (e) { res = {ok: false, status: "network"}; }
  if (!res.ok) {
    say("无法读取批次列表，稍后重试 / cannot list batches, retrying (" + res.status + ")", "error");
    timer = setTimeout(refresh, 5000);
    return;
  }
  const batches = (await res.json()).batches;
  const body = $("batches").tBodies[0];
  body.innerHTML = "";
  for (const b of batches) {
    const row = body.insertRow();
    row.dataset.batch = b.batch_id; row.dataset.status = b.status;
    if (b.batch_id === highlight) row.style.background = "#f3f8ff";
    cell(row, esc(b.name) + "<br><small>" + esc(b.batch_id) + "</small>");
    cell(row, esc(new Date(b.submitted_at).toLocaleString("zh-CN")));
    cell(row, '<span class="status">' + esc(b.status_zh) + " / " + esc(b.status_en) + '</span><ol class="steps">' +
         b.stages.map((s) => '<li class="' + (s.done ? "done" : "") + '" title="' + esc(s.en) + '">' + esc(s.zh) +
                             "</li>").join("") + "</ol>" +
         (b.failure ? '<p class="failure rejected">' + esc(b.failure.stage) + " 失败 / failed: " +
                      esc(b.failure.message_zh) + " / " + esc(b.failure.message_en) + "</p>" : ""));
    cell(row, "接收 / accepted " + b.pages_accepted +
         (b.pages_warned ? '<br><span class="warned">其中有警告 / with warnings ' + b.pages_warned + "</span>" : "") +
         (b.pages_rejected ? '<br><span class="rejected">拒收 / rejected ' + b.pages_rejected + "</span>" : ""));
    const id = encodeURIComponent(b.batch_id);
    cell(row, b.status === "submitted" ? "等待校验 / awaiting validation" :
         '<a class="report" href="/batches/' + id + '/report">查看 / view</a> · ' +
         '<a href="/batches/' + id + '/report?download=1">下载网页 / HTML</a> · ' +
         '<a href="/api/batches/' + id + '/report?download=1">JSON</a>');
  }
  const busy = batches.some((b) => b.status !== "archived" && !b.failure);
  timer = setTimeout(refresh, busy ? 1000 : 10000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("upload").addEventListener("submit", upload);
  refresh();
});
