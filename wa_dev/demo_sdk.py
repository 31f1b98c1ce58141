"""A stand-in for Meta's JavaScript SDK, served next to the Graph emulator (demo and tests).

``FB.login`` here does what Embedded Signup does for a customer who completes the flow: the
emulator issues a ``code`` for the next WABA waiting to be onboarded, the page receives a
``WA_EMBEDDED_SIGNUP`` message (``FINISH``, or ``FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING``
when ``extras.featureType`` asks for coexistence) and the login callback gets the code.
Since the message is posted by the page's own window, the page must accept its own origin
(``EMBEDDED_SIGNUP_MESSAGE_ORIGINS``). Never used against the real Meta.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

SDK_JS = r"""
(function () {
  var base = (document.currentScript && new URL(document.currentScript.src).origin) || "";
  window.FB = {
    init: function () {},
    login: function (callback, options) {
      var coexistence = !!(options && options.extras && options.extras.featureType === "whatsapp_business_app_onboarding");
      fetch(base + "/es/complete", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ coexistence: coexistence }) })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          if (s.error) { window.postMessage(JSON.stringify({ type: "WA_EMBEDDED_SIGNUP", event: "CANCEL", data: { error_message: s.error } }), "*"); callback({}); return; }
          var data = coexistence ? { waba_id: s.waba_id } : { waba_id: s.waba_id, phone_number_id: s.phone_number_id, business_id: s.business_id };
          window.postMessage(JSON.stringify({ type: "WA_EMBEDDED_SIGNUP", event: coexistence ? "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING" : "FINISH", data: data }), "*");
          setTimeout(function () { callback({ authResponse: { code: s.code } }); }, 50);
        });
    }
  };
})();
"""


def with_demo_sdk(emulator: Any, signups: list[str]) -> Starlette:
    """The emulator's app plus ``GET /sdk.js`` and ``POST /es/complete``.

    ``signups`` lists the WABA ids customers will "pick" in the flow, in order; a request
    for coexistence takes the first WABA whose first number is a coexistence one.
    """

    async def sdk(_: Request) -> Response:
        return Response(SDK_JS, media_type="text/javascript")

    async def complete(request: Request) -> JSONResponse:
        wanted = bool((await request.json()).get("coexistence"))
        for waba_id in list(signups):
            waba = emulator.wabas.get(waba_id)
            numbers = [emulator.numbers[n] for n in waba.number_ids] if waba else []
            if waba and numbers and numbers[0].coexistence == wanted:
                signups.remove(waba_id)
                return JSONResponse(
                    {"code": emulator.issue_code(waba_id), "waba_id": waba_id, "phone_number_id": numbers[0].id, "business_id": waba.owner_business_id}
                )
        return JSONResponse({"error": "no WABA left to onboard in the emulator"})

    return Starlette(
        routes=[Route("/sdk.js", sdk), Route("/es/complete", complete, methods=["POST"]), Mount("/", app=emulator.create_app())],
        middleware=[Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"], allow_headers=["Content-Type"])],
    )
