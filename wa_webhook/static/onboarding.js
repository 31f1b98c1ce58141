// Onboarding page: Embedded Signup with the Facebook JavaScript SDK (Meta, "Embedded Signup:
// implementation"). The FB.login code and the WA_EMBEDDED_SIGNUP message arrive in either
// order; both are posted together to our backend, which exchanges the code at once (it lives
// 30 seconds). Meta returns no tracking code: this page correlates by posting to its own
// session URL.
(function () {
  "use strict";
  const body = document.body;
  const origins = body.dataset.origins.split(",").map((s) => s.trim()).filter(Boolean);
  const statusBox = document.getElementById("status");
  const button = document.getElementById("connect");
  const tokenInput = document.getElementById("token");
  const params = new URLSearchParams(window.location.search);
  if (params.get("token")) tokenInput.value = params.get("token");

  function show(text, kind) {
    statusBox.textContent = text;
    statusBox.className = kind || "";
  }
  function api(path, options) {
    const headers = Object.assign({ Authorization: "Bearer " + tokenInput.value.trim() }, (options && options.headers) || {});
    return fetch(path, Object.assign({}, options, { headers })).then(async (r) => {
      const data = await r.json().catch(() => ({}));
      if (!r.ok) {
        const detail = data.detail || {};
        let text = r.statusText;
        if (typeof detail === "string") text = detail;
        else if (Array.isArray(detail)) text = "the request was refused: " + detail.map((d) => (d.loc || []).slice(-1)[0] + " " + d.msg).join("; ");
        else if (detail.message) text = detail.message;
        throw new Error(text + (detail.meta_code ? " (Meta error " + detail.meta_code + ")" : ""));
      }
      return data;
    });
  }
  function originAllowed(origin) {
    try {
      const host = new URL(origin).hostname;
      return origins.some((suffix) => host === suffix || host.endsWith("." + suffix) || origin === suffix);
    } catch (e) { return false; }
  }
  function loadSdk(url) {
    return new Promise((resolve, reject) => {
      if (window.FB) return resolve(window.FB);
      const s = document.createElement("script");
      s.src = url; s.async = true; s.crossOrigin = "anonymous";
      s.onload = () => resolve(window.FB);
      s.onerror = () => reject(new Error("could not load the Facebook SDK"));
      document.head.appendChild(s);
    });
  }
  async function poll(statusUrl) {
    for (let i = 0; i < 150; i++) {
      const st = await api(statusUrl);
      if (st.status === "expired") { show("This attempt expired: start again.", "error"); button.disabled = false; return; }
      if (st.status === "failed" || st.follow_up === "failed") {
        show("Connection failed: " + ((st.error && st.error.message) || "unknown error"), "error");
        return;
      }
      // connected = Meta confirmed (PARTNER_ADDED) and the follow-up listed the numbers
      if (st.status === "completed") {
        const numbers = st.phone_numbers.map((n) => n.display_phone_number || n.phone_number_id).join(", ");
        show("Connected" + (numbers ? ": " + numbers : "") + ".", "ok");
        return;
      }
      show(st.follow_up === "done" ? "Finishing: waiting for Meta's confirmation…" : "Setting up your number…");
      await new Promise((r) => setTimeout(r, 2000));
    }
    show("Still working on it: come back in a few minutes.");
  }
  async function connect() {
    button.disabled = true;
    show("Starting…");
    try {
      const coexistence = document.getElementById("coexistence").checked;
      const start = await api("/api/v1/whatsapp/onboarding-url" + (coexistence ? "?coexistence=true" : ""));
      const FB = await loadSdk(body.dataset.sdkUrl);
      FB.init({ appId: start.app_id, autoLogAppEvents: true, xfbml: true, version: start.graph_api_version });
      let code = null, signup = null, finished = false;
      const done = async () => {
        if (finished || !signup || (signup.event !== "CANCEL" && !code)) return;
        finished = true;
        window.removeEventListener("message", onMessage);
        const payload = Object.assign({ event: signup.event, code: code }, signup.data || {});
        show(signup.event === "CANCEL" ? "Cancelled." : "Connecting…");
        const st = await api(start.session_url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
        if (st.status === "cancelled") {
          const why = st.error && (st.error.step ? " at " + st.error.step : st.error.message ? ": " + st.error.message : "");
          show("Cancelled" + (why || "") + ".", "error"); button.disabled = false; return;
        }
        await poll(start.status_url);
      };
      const onMessage = (event) => {
        if (!originAllowed(event.origin)) return;
        let data; try { data = typeof event.data === "string" ? JSON.parse(event.data) : event.data; } catch (e) { return; }
        if (!data || data.type !== "WA_EMBEDDED_SIGNUP") return;
        signup = { event: data.event, data: data.data || {} };
        done().catch((e) => { show(e.message, "error"); button.disabled = false; });
      };
      window.addEventListener("message", onMessage);
      FB.login((response) => {
        if (response && response.authResponse && response.authResponse.code) {
          code = response.authResponse.code;
          done().catch((e) => { show(e.message, "error"); button.disabled = false; });
        } else if (!signup) {
          show("Cancelled.", "error"); button.disabled = false;
        }
      }, start.fb_login_options);
    } catch (e) {
      show(e.message, "error");
      button.disabled = false;
    }
  }
  button.addEventListener("click", connect);
})();
