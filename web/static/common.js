"use strict";
// Shared by every page: element lookup, HTML escaping, JSON fetch that sends the login to the
// login page, and the bar naming who is logged in, with the pages their role may use.
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                                                "'": "&#39;"}[c]));
function cell(row, html) { const td = row.insertCell(); td.innerHTML = html; return td; }

async function api(path, options, poll) {
  // poll: the page refreshing itself, which must not keep an idle session alive
  const res = await fetch(path, poll ? {...options, headers: {"X-Archive-Poll": "1"}} : options);
  if (res.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); }
  return res;
}

async function nav() {
  const bar = $("nav");
  if (!bar) return;
  const res = await api("/api/session");
  if (!res.ok) return;
  const who = await res.json();
  const links = [];
  if (who.permissions.includes("batches:read")) links.push('<a href="/">批次上传 / batches</a>');
  if (who.permissions.includes("files:search")) links.push('<a href="/search">档案查询 / search</a>');
  if (who.permissions.includes("transfers:read")) links.push('<a href="/transfers">档案转递 / transfers</a>');
  bar.innerHTML = links.join("") + '<span class="who" id="who">' + esc(who.user) + "（" + esc(who.role_zh) +
    (who.agency ? "，" + esc(who.agency) : "") + '）</span><button id="logout" type="button">退出 / log out</button>';
  $("logout").addEventListener("click", async () => {
    await fetch("/api/logout", {method: "POST"});
    location.href = "/login";
  });
}
document.addEventListener("DOMContentLoaded", nav);
