// client.mjs - the SDK under a real stack, driven by tests/integration/test_sdk_node.py.
//
// Owns: one WsgwClient (ws as its WebSocket), configured from the JSON in
// argv[2]; prints one JSON line per thing the SDK reports (state, event, gap,
// reply, subscribed, refreshed, message, stopped; heartbeat: the gateway's
// heartbeats seen on the socket) and obeys one JSON command per stdin line
// ({"subscribe": {...}}, {"close": true}, {"positions": true}, {"url": i} to
// switch the gateway the next connection uses). "reply" lines are what
// subscribe() resolved with, "subscribed" lines every reply (re-subscriptions
// after reconnects too).
// Must not: decide anything the test checks (it only reports), or outlive
// its stdin (EOF ends it).
//
// WSGW_DEBUG=1 in the environment logs the raw socket's errors and closes
// to stderr (the test prints stderr at teardown).
//
// Config: urls (list; the first is used until {"url": i}), token (a string),
// or mint {secret, user, ttl, objects, bad} (a callback minting a fresh HS256
// JWT per call, counted in "minted" lines; the calls numbered in `bad` get a
// badly signed one, a refresh the gateway refuses), protocol, backoff,
// random (a constant jitter), heartbeatTimeout, refreshMargin, subscribe
// (sent at start).

import { createHmac } from "node:crypto";
import { createInterface } from "node:readline";
import WebSocket from "ws";
import { WsgwClient } from "../../src/wsgw.js";

const cfg = JSON.parse(process.argv[2] || "{}");
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const b64url = (s) => Buffer.from(s).toString("base64url");

function mint({ secret, user, ttl, objects }) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: String(user), exp: now + ttl };
  if (objects) claims.objects = objects;
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" })) + "." + b64url(JSON.stringify(claims));
  return head + "." + createHmac("sha256", secret).update(head).digest("base64url");
}

let urlIndex = 0;
let minted = 0;
const token = cfg.mint
  ? () => {
    minted += 1;
    const bad = (cfg.mint.bad || []).includes(minted);
    const t = mint(bad ? { ...cfg.mint, secret: cfg.mint.secret + "-wrong" } : cfg.mint);
    out({ type: "minted", n: minted, bad });
    return Promise.resolve(t);
  }
  : cfg.token;

// The SDK takes one URL; a WebSocket wrapper picks the gateway per connection
// (the test's stand-in for a load balancer over two gateways).
class SwitchingWebSocket extends WebSocket {
  constructor(url, protocols) {
    const u = new URL(url);
    const target = new URL(cfg.urls[urlIndex]);
    u.host = target.host;
    super(u.toString(), protocols);
    // The heartbeats the gateway sends (the SDK consumes them silently).
    this.on("message", (data, isBinary) => {
      const m = isBinary ? null : /^\{"heartbeat":(\d+)\}$/.exec(data.toString());
      if (m) out({ type: "heartbeat", n: Number(m[1]) });
    });
    if (process.env.WSGW_DEBUG) {
      this.on("close", (code) => process.stderr.write(`debug: ws close ${code}\n`));
      this.on("error", (e) => process.stderr.write(`debug: ws error ${e.message}\n`));
    }
  }
}

const client = new WsgwClient(cfg.urls[0], {
  token,
  WebSocket: SwitchingWebSocket,
  protocol: cfg.protocol === undefined ? "wsgw.2" : cfg.protocol,
  backoff: cfg.backoff,
  heartbeatTimeout: cfg.heartbeatTimeout,
  refreshMargin: cfg.refreshMargin,
  random: cfg.random === undefined ? undefined : () => cfg.random, // fixed jitter: exact delays
});

client.on("state", (s) => out({ type: "state", ...s, protocol: client.protocol, user: client.user }));
client.on("event", (e) => out({ type: "event", group: e.group, position: e.position, data: e.data, text: e.text }));
client.on("gap", (g) => out({ type: "gap", ...g }));
client.on("refreshed", (r) => out({ type: "refreshed", ...r }));
client.on("subscribed", (r) => out({ type: "subscribed", ...r }));
client.on("message", (m) => out({ type: "message", msg: m }));
client.on("stopped", (s) => {
  out({ type: "stopped", ...s });
});

function subscribe(groups) {
  client.subscribe(groups).then(
    (reply) => out({ type: "reply", ...reply, user: client.user }),
    (err) => out({ type: "rejected", code: err.code, message: err.message }),
  );
}

if (cfg.subscribe) subscribe(cfg.subscribe);
else client.connect();

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line);
  if (cmd.subscribe) subscribe(cmd.subscribe);
  if (cmd.url !== undefined) urlIndex = cmd.url;
  if (cmd.positions) out({ type: "positions", positions: client.positions });
  if (cmd.close) client.close();
});
rl.on("close", () => {
  client.close();
  process.exit(0);
});
