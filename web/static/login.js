"use strict";
// The login page: a form posted as form data; the session comes back as an HttpOnly cookie.

// The page to go back to, if it is one of this site's (never another site's: /\evil, //evil, ...).
function sameSite(next) {
  if (!next) return null;
  try {
    const url = new URL(next, location.origin);
    return url.origin === location.origin ? url.pathname + url.search : null;
  } catch (e) { return null; }
}
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login"), message = document.getElementById("message");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const res = await fetch("/api/login", {method: "POST", body: new URLSearchParams(new FormData(form))});
    const body = await res.json().catch(() => ({}));
    if (!res.ok) { message.textContent = body.detail || ("登录失败 / login failed: " + res.status); message.className = "error"; return; }
    location.href = sameSite(new URLSearchParams(location.search).get("next")) ||
      (body.role === "archivist" ? "/search" : "/");
  });
});
