// The operator page: search, trace and replay over the admin API (/api/admin/whatsapp/...).
"use strict";
(function () {
  const api = "/api/admin/whatsapp";
  const $ = (id) => document.getElementById(id);
  let nextBefore = null;
  let lastQuery = null;
  let traced = null;

  function token() { return sessionStorage.getItem("adminToken") || ""; }

  async function call(path, options) {
    const response = await fetch(api + path, Object.assign({ headers: { Authorization: "Bearer " + token(), "Content-Type": "application/json" } }, options || {}));
    const text = await response.text();
    let body = null;
    try { body = JSON.parse(text); } catch (e) { body = { detail: text }; }
    if (!response.ok) {
      const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : response.statusText;
      throw new Error(response.status + ": " + detail);
    }
    return body;
  }

  function say(text, cls) { const m = $("message"); m.textContent = text; m.className = cls || ""; }

  function cell(row, text, cls) { const td = document.createElement("td"); td.textContent = text == null ? "" : String(text); if (cls) td.className = cls; row.appendChild(td); return td; }

  function show(hits, append) {
    const body = $("results").querySelector("tbody");
    if (!append) body.textContent = "";
    for (const w of hits) {
      const tr = document.createElement("tr");
      tr.dataset.id = w.id;
      cell(tr, w.id);
      cell(tr, w.received_at);
      cell(tr, w.status, w.status === "dead" ? "dead" : "");
      cell(tr, w.fields);
      cell(tr, (w.items_processed || 0) + "/" + (w.items_received || 0));
      cell(tr, w.error_kind ? w.error_kind + ": " + (w.last_error || "") : "");
      const td = cell(tr, "");
      const b = document.createElement("button");
      b.type = "button"; b.textContent = "Trace"; b.className = "trace"; b.dataset.id = w.id;
      b.addEventListener("click", () => { $("replay-state").textContent = ""; trace(w.id); });
      td.appendChild(b);
      body.appendChild(tr);
    }
    $("results").hidden = false;
  }

  async function search(append) {
    const form = new FormData($("search"));
    const params = new URLSearchParams();
    for (const [k, v] of form.entries()) if (String(v).trim()) params.append(k, String(v).trim());
    if (append && nextBefore) params.set("before_id", nextBefore);
    lastQuery = params;
    say("Searching…");
    try {
      const found = await call("/webhooks?" + params.toString());
      show(found.webhooks, append);
      nextBefore = found.next_before_id;
      $("more").hidden = !nextBefore;
      say(found.webhooks.length ? "" : "No webhook matches.", found.webhooks.length ? "ok" : "");
      if (found.webhooks.length) say(found.webhooks.length + " webhook(s)" + (nextBefore ? ", more older" : "") + ".", "ok");
    } catch (e) { say(e.message, "error"); }
  }

  async function trace(id) {
    traced = id;
    $("trace-panel").hidden = false;
    $("trace-id").textContent = id;
    try {
      const t = await call("/webhooks/" + id + "/trace" + ($("with-body").checked ? "?include_body=true" : ""));
      $("trace").textContent = JSON.stringify(t, null, 2);
      $("replay").hidden = t.processing.status !== "dead" || !t.processing.body_kept;
    } catch (e) { $("trace").textContent = e.message; }
  }

  async function replay() {
    try {
      const r = await call("/webhooks/replay", { method: "POST", body: JSON.stringify({ ids: [traced] }) });
      $("replay-state").textContent = r.count ? "Replayed: back in line." : "Nothing replayed (not dead any more?).";
      $("replay-state").className = r.count ? "ok" : "";
      await trace(traced);
    } catch (e) { $("replay-state").textContent = e.message; $("replay-state").className = "error"; }
  }

  $("save-token").addEventListener("click", () => { sessionStorage.setItem("adminToken", $("token").value.trim()); $("token").value = ""; $("token-state").textContent = "token set"; });
  if (token()) $("token-state").textContent = "token set";
  $("search").addEventListener("submit", (ev) => { ev.preventDefault(); nextBefore = null; search(false); });
  $("more").addEventListener("click", () => search(true));
  $("with-body").addEventListener("change", () => { if (traced) trace(traced); });
  $("replay").addEventListener("click", replay);
})();
