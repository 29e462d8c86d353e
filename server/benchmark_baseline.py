"""Baselines for the benchmark (``server.benchmark``): the least a route of each kind can
do, served with the same uvicorn settings as the product.

- ``redirect_app``: a bare Starlette 302 route (no look-up, no click).
- ``webhook_app``: ``POST /stripe/webhook`` that checks the signature with the Stripe SDK
  and inserts the event id and body into the inbox table, nothing else.

Also the wrk script that signs every webhook request (:data:`SIGNED_WEBHOOKS_LUA`)."""

from __future__ import annotations

import json
import os

import stripe
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Route


async def bare_redirect(_request: Request) -> RedirectResponse:
    return RedirectResponse("https://shop.example/pricing", status_code=302)


redirect_app = Starlette(routes=[Route("/{key}", bare_redirect)])


def _secret() -> str:
    return os.environ.get("CODEQR_STRIPE_WEBHOOK_SECRETS", "").split(",")[0]


async def bare_webhook(request: Request) -> PlainTextResponse | JSONResponse:
    body = await request.body()
    try:
        stripe.WebhookSignature.verify_header(
            body.decode(), request.headers.get("stripe-signature", ""), _secret(), 300
        )
    except stripe.SignatureVerificationError:
        return PlainTextResponse("bad signature", status_code=400)
    event_id = str(json.loads(body)["id"])
    await run_in_threadpool(_insert, event_id, body.decode())
    return JSONResponse({"received": True})


def _insert(event_id: str, payload: str) -> None:
    from sqlalchemy import insert

    from server import db
    from server.models import StripeEvent, utcnow

    now = utcnow()
    with db.get_engine().begin() as conn:
        conn.execute(
            insert(StripeEvent.__table__),  # type: ignore[attr-defined]
            {
                "id": event_id,
                "type": "baseline",
                "account": None,
                "livemode": False,
                "created": 0,
                "payload": payload,
                "status": "skipped",
                "reason": "benchmark baseline",
                "attempts": 0,
                "next_attempt_at": now,
                "received_at": now,
            },
        )


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


webhook_app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/stripe/webhook", bare_webhook, methods=["POST"]),
    ]
)


# wrk script: every request a distinct customer.created event (id from a run prefix and a
# counter), signed like Stripe does: v1 = HMAC-SHA256(secret, "<t>.<body>") in hex.
# Arguments: wrk ... -- <id prefix> <webhook secret>
SIGNED_WEBHOOKS_LUA = r"""
local bit = require("bit")
local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local rshift, lshift, ror, tobit, tohex = bit.rshift, bit.lshift, bit.ror, bit.tobit, bit.tohex
local byte, char, rep = string.byte, string.char, string.rep

local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local function pad(msg)
  local len = #msg
  local zeros = (64 - (len + 9) % 64) % 64
  local bits = len * 8
  local hi, lo = math.floor(bits / 4294967296), bits % 4294967296
  return msg .. "\128" .. rep("\0", zeros) .. char(
    band(rshift(hi, 24), 255), band(rshift(hi, 16), 255), band(rshift(hi, 8), 255), band(hi, 255),
    band(rshift(lo, 24), 255), band(rshift(lo, 16), 255), band(rshift(lo, 8), 255), band(lo, 255))
end

local function block(msg, i, H)
  local w = {}
  for j = 1, 16 do
    local a, b, c, d = byte(msg, i + (j - 1) * 4, i + (j - 1) * 4 + 3)
    w[j] = bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d)
  end
  for j = 17, 64 do
    local v, u = w[j - 15], w[j - 2]
    local s0 = bxor(ror(v, 7), ror(v, 18), rshift(v, 3))
    local s1 = bxor(ror(u, 17), ror(u, 19), rshift(u, 10))
    w[j] = tobit(w[j - 16] + s0 + w[j - 7] + s1)
  end
  local a, b, c, d, e, f, g, h = H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8]
  for j = 1, 64 do
    local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
    local ch = bxor(band(e, f), band(bnot(e), g))
    local t1 = tobit(h + S1 + ch + K[j] + w[j])
    local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
    local maj = bxor(band(a, b), band(a, c), band(b, c))
    local t2 = tobit(S0 + maj)
    h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + t2)
  end
  H[1], H[2], H[3], H[4] = tobit(H[1] + a), tobit(H[2] + b), tobit(H[3] + c), tobit(H[4] + d)
  H[5], H[6], H[7], H[8] = tobit(H[5] + e), tobit(H[6] + f), tobit(H[7] + g), tobit(H[8] + h)
end

local function sha256(msg)
  msg = pad(msg)
  local H = {
    tobit(0x6a09e667), tobit(0xbb67ae85), tobit(0x3c6ef372), tobit(0xa54ff53a),
    tobit(0x510e527f), tobit(0x9b05688c), tobit(0x1f83d9ab), tobit(0x5be0cd19),
  }
  for i = 1, #msg, 64 do block(msg, i, H) end
  return H
end

local function binary(H)
  local out = {}
  for i = 1, 8 do
    local v = H[i]
    out[i] = char(band(rshift(v, 24), 255), band(rshift(v, 16), 255), band(rshift(v, 8), 255), band(v, 255))
  end
  return table.concat(out)
end

local function hex(H)
  local out = {}
  for i = 1, 8 do out[i] = tohex(H[i], 8) end
  return table.concat(out)
end

local ipad, opad
local function hmac_hex(msg)
  return hex(sha256(opad .. binary(sha256(ipad .. msg))))
end

local prefix, counter = "run", 0
local template = '{"id":"evt_bench_%s_%d","object":"event","api_version":"2024-06-20",'
  .. '"created":%d,"livemode":false,"account":"acct_bench","pending_webhooks":1,'
  .. '"request":{"id":null,"idempotency_key":null},"type":"customer.created",'
  .. '"data":{"object":{"id":"cus_bench%d","object":"customer","email":"buyer%d@example.com",'
  .. '"name":"Benchmark Buyer","created":%d,"livemode":false,'
  .. '"metadata":{"codeqrCustomerId":"user_%d","codeqrClickId":"benchclick%d"}}}}'

function init(args)
  -- Each wrk run of a benchmark gets new ids: the start time joins the run's prefix.
  prefix = (args[1] or prefix) .. "_" .. os.time()
  local key = args[2] or ""
  key = key .. rep("\0", 64 - #key)
  local i, o = {}, {}
  for j = 1, 64 do
    local k = byte(key, j)
    i[j] = char(bxor(k, 0x36))
    o[j] = char(bxor(k, 0x5c))
  end
  ipad, opad = table.concat(i), table.concat(o)
end

function request()
  counter = counter + 1
  local now = os.time()
  local body = string.format(template, prefix, counter, now, counter, counter, now, counter, counter)
  local signature = "t=" .. now .. ",v1=" .. hmac_hex(now .. "." .. body)
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Stripe-Signature"] = signature,
  }, body)
end
"""
