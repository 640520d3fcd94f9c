"use strict";
// The login page: a form posted as form data; the session comes back as an HttpOnly cookie.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login"), message = document.getElementById("message");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const res = await fetch("/api/login", {method: "POST", body: new URLSearchParams(new FormData(form))});
    const body = await res.json().catch(() => ({}));
    if (!res.ok) { message.textContent = body.detail || ("登录失败 / login failed: " + res.status); message.className = "error"; return; }
    const next = new URLSearchParams(location.search).get("next");
    location.href = next && next.startsWith("/") && !next.startsWith("//") ? next :
      (body.role === "archivist" ? "/search" : "/");
  });
});
