// client.test.js - WsgwClient against a fake WebSocket and a manual clock:
// the request queue, positions and dedupe, reconnect policy, heartbeat,
// token refresh.
//
// Owns: behaviour tests of spec section 2. Must not: use real timers or the
// network (fake.js).

import { test } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "../../src/wsgw.js";
import { FakeWebSocket, flush, jwt, makeClient } from "./fake.js";

const { WsgwClient, WsgwError } = sdk;
const P = (n) => `${n}-0123456789ab`;
const G1 = "jobs-status_changed";
const reply = (current, extra = {}) => ({ groups_current: current, groups_joined: current, groups_left: [], ...extra });
const env = (group, n, text = `{"n":${n}}`) => ({ group, position: P(n), text });

// Time passes on a healthy connection: the gateway's pings keep it alive.
async function idle(clock, ws, ms) {
  for (let left = ms; left > 0; left -= 20000) {
    await clock.advance(Math.min(20000, left));
    ws.ping();
  }
}

async function opened(options = {}) {
  const h = await makeClient(options, sdk);
  h.client.connect();
  await flush();
  h.ws = FakeWebSocket.last();
  h.ws.open();
  return h;
}

test("connect: token URL-encoded in the query, wsgw.2 offered, idempotent", async () => {
  const { client } = await makeClient({ token: "a+b/c=" }, sdk);
  client.connect();
  client.connect();
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1);
  const ws = FakeWebSocket.last();
  assert.equal(ws.url, "ws://gw.test/websocket/?token=a%2Bb%2Fc%3D");
  assert.deepEqual(ws.protocols, ["wsgw.2", "wsgw.1"]);
  ws.open();
  assert.equal(client.state, "open");
  assert.equal(client.user, 7);
  assert.equal(client.protocol, "wsgw.2");
});

test("options: protocol null offers none; no token, no query; bad options throw", async () => {
  const { client } = await makeClient({ protocol: null }, sdk);
  client.connect();
  await flush();
  assert.equal(FakeWebSocket.last().url, "ws://gw.test/websocket/");
  assert.equal(FakeWebSocket.last().protocols, undefined);
  assert.throws(() => new WsgwClient("http://x/", { WebSocket: FakeWebSocket }), TypeError);
  assert.throws(() => new WsgwClient("ws://x/", { WebSocket: FakeWebSocket, token: 5 }), TypeError);
  assert.throws(() => new WsgwClient("ws://x/", { WebSocket: FakeWebSocket, backoff: { initial: -1 } }), TypeError);
  assert.throws(() => new WsgwClient("ws://x/", { WebSocket: FakeWebSocket, protocol: "v3" }), TypeError);
  assert.throws(() => new WsgwClient("ws://x/", { WebSocket: null }), /WebSocket/);
  assert.throws(() => client.on("nope", () => {}), TypeError);
  await assert.rejects(client.subscribe({ jobs: [1n] }), TypeError);
  await assert.rejects(client.subscribe(["jobs"]), TypeError);
});

test("a gateway without wsgw.2 naming wsgw.1: the old protocol", async () => {
  const c2 = await makeClient({}, sdk);
  c2.client.connect();
  await flush();
  FakeWebSocket.last().open("wsgw.1");
  FakeWebSocket.last().receive({ heartbeat: 5 }); // not a heartbeat on the old protocol: an event
  assert.equal(c2.client.protocol, "");
  assert.equal(c2.of("event").length, 1);
});

test("a gateway from before wsgw.1 (history off) under ws: retried at once offering nothing, offered again later", async () => {
  const { client, clock, of } = await makeClient({}, sdk);
  client.subscribe({ jobs: ["a"] });
  await flush();
  FakeWebSocket.last().noSubprotocol();
  await clock.advance(0);
  const ws = FakeWebSocket.last();
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(ws.protocols, undefined);
  ws.open("");
  await flush();
  assert.equal(client.protocol, "");
  assert.deepEqual(ws.sentJson(), [{ groups: { jobs: ["a"] }, xrftoken: null }]);
  ws.receive(reply(["jobs-a"]));
  ws.serverClose(1001);
  await clock.advance(1000);
  assert.deepEqual(FakeWebSocket.last().protocols, ["wsgw.2", "wsgw.1"]);
  assert.deepEqual(of("state").map((s) => s.delay).filter((d) => d !== undefined), [0, 125]);
});

test("subscribe: refusals collected, reply mapped, xrftoken sent", async () => {
  const { client, ws } = await opened({ xrftoken: () => "csrf1" });
  const p = client.subscribe({ jobs: ["status_changed"], job_events: [42, 43] });
  await flush();
  assert.deepEqual(ws.sentJson(), [{ groups: { jobs: ["status_changed"], job_events: [42, 43] }, xrftoken: "csrf1" }]);
  ws.receive({ error: "access denied to channel job_events for resource id 43" });
  ws.receive(reply(["job_events-42", G1], { positions: { "job_events-42": P(1), [G1]: P(2) } }));
  assert.deepEqual(await p, {
    current: ["job_events-42", G1], joined: ["job_events-42", G1], left: [],
    refused: ["access denied to channel job_events for resource id 43"],
    recovery: {}, positions: { "job_events-42": P(1), [G1]: P(2) },
  });
  assert.deepEqual(client.positions, { "job_events-42": P(1), [G1]: P(2) });
});

test("queue: one request in flight; later calls coalesce into the latest set", async () => {
  const { client, ws } = await opened();
  const a = client.subscribe({ jobs: ["a"] });
  await flush();
  const b = client.subscribe({ jobs: ["b"] });
  const c = client.subscribe({ jobs: ["c"] });
  await flush();
  assert.equal(ws.sent.length, 1, "b and c wait for a's reply");
  ws.receive(reply(["jobs-a"]));
  await flush();
  assert.equal(ws.sent.length, 2);
  assert.deepEqual(JSON.parse(ws.sent[1]).groups, { jobs: ["c"] });
  ws.receive(reply(["jobs-c"], { groups_left: ["jobs-a"] }));
  const [ra, rb, rc] = await Promise.all([a, b, c]);
  assert.deepEqual(ra.current, ["jobs-a"]);
  assert.equal(rb, rc);
  assert.deepEqual(rc.left, ["jobs-a"]);
});

test("queue: a whole-request error rejects with code request; the next call goes on", async () => {
  const { client, ws } = await opened();
  const a = client.subscribe({ nope: [1] });
  await flush();
  ws.receive({ error: "unknown channel: nope" });
  await assert.rejects(a, (e) => e instanceof WsgwError && e.code === "request" && e.message === "unknown channel: nope");
  const b = client.subscribe({ jobs: ["a"] });
  await flush();
  ws.receive(reply(["jobs-a"]));
  assert.deepEqual((await b).current, ["jobs-a"]);
});

test("queue: try-again-later answers are retried after a backoff, 5 times, then reject", async () => {
  const { client, ws, clock } = await opened();
  const a = client.subscribe({ jobs: ["a"] });
  await flush();
  ws.receive({ error: "server busy, try again later" });
  await flush();
  assert.equal(ws.sent.length, 1, "not at once");
  await clock.advance(30000);
  assert.equal(ws.sent.length, 2);
  ws.receive(reply(["jobs-a"]));
  assert.deepEqual((await a).current, ["jobs-a"]);

  const b = client.subscribe({ jobs: ["b"] });
  let settled = null;
  b.then(() => (settled = "ok"), (e) => (settled = e));
  for (let i = 0; i < 6; i++) {
    await clock.advance(30000);
    assert.equal(ws.sent.length, 3 + i);
    ws.receive({ error: "too many subscription changes, try again later" });
  }
  await clock.advance(30000);
  assert.equal(ws.sent.length, 8, "1 + 5 retries, no more");
  assert.equal(settled.code, "request");
  assert.equal(settled.message, "too many subscription changes, try again later");
});

test("events: envelopes parsed, routed per group, duplicates dropped, old protocol raw", async () => {
  const { client, ws, of } = await opened();
  const got = [];
  const off = client.onGroup(G1, (ev) => got.push(ev.position));
  client.subscribe({ jobs: ["status_changed"] });
  await flush();
  ws.receive(reply([G1], { positions: { [G1]: P(1) } }));
  ws.receive(env(G1, 1)); // the reply's position again: a duplicate
  ws.receive(env(G1, 2));
  ws.receive(env(G1, 2));
  ws.receive(env(G1, 3, "not json"));
  ws.receive(env("other", 4));
  off();
  ws.receive(env(G1, 5));
  assert.deepEqual(got, [P(2), P(3)]);
  assert.deepEqual(of("event").map((e) => [e.group, e.position, e.data]),
    [[G1, P(2), { n: 2 }], [G1, P(3), undefined], ["other", P(4), { n: 4 }], [G1, P(5), { n: 5 }]]);
  assert.equal(client.positions[G1], P(5));

  const old = await makeClient({ protocol: null }, sdk);
  old.client.connect();
  await flush();
  old.ws = FakeWebSocket.last();
  old.ws.open("", { accept: true, user: 9 });
  old.ws.receive('{"status":"running"}');
  old.ws.receive("plain text");
  assert.deepEqual(old.of("event"), [
    { group: null, position: null, text: '{"status":"running"}', data: { status: "running" } },
    { group: null, position: null, text: "plain text", data: undefined }]);
  assert.equal(old.client.protocol, "");
  assert.equal(old.client.user, 9);
});

test("positions: kept for current groups; notices; gaps; re-sent on reconnect only", async () => {
  const { client, ws, clock, of } = await opened({ token: "t" });
  client.subscribe({ jobs: ["a", "b"], job_events: [42] });
  await flush();
  ws.receive(reply(["job_events-42", "jobs-a", "jobs-b"],
    { positions: { "job_events-42": P(1), "jobs-a": P(1), "jobs-b": P(1) } }));
  ws.receive(env("jobs-a", 7));
  ws.receive({ recovery: { "jobs-b": "expired", "job_events-42": "unknown" }, positions: { "jobs-b": P(9) } });
  assert.deepEqual(client.positions, { "jobs-a": P(7), "jobs-b": P(9) });
  assert.deepEqual(of("gap"), [{ group: "jobs-b", status: "expired" }, { group: "job_events-42", status: "unknown" }]);
  // A later subscribe on the same connection carries no positions.
  client.subscribe({ jobs: ["a", "b"], job_events: [42] });
  await flush();
  assert.equal(ws.sentJson()[1].positions, undefined);
  ws.receive(reply(["job_events-42", "jobs-a", "jobs-b"],
    { groups_joined: [], positions: { "job_events-42": P(10), "jobs-a": P(7), "jobs-b": P(9) } }));
  // Leaving a group forgets its position.
  client.subscribe({ jobs: ["a", "b"] });
  await flush();
  ws.receive(reply(["jobs-a", "jobs-b"], { groups_left: ["job_events-42"], positions: { "jobs-a": P(7), "jobs-b": P(9) } }));
  await flush();
  assert.deepEqual(client.positions, { "jobs-a": P(7), "jobs-b": P(9) });
  ws.receive(env("jobs-b", 11));
  ws.serverClose(1006);
  await clock.advance(1000);
  const ws2 = FakeWebSocket.last();
  assert.notEqual(ws2, ws);
  ws2.open();
  await flush();
  assert.deepEqual(ws2.sentJson(), [{ groups: { jobs: ["a", "b"] }, xrftoken: null,
    positions: { "jobs-a": P(7), "jobs-b": P(11) } }]);
  ws2.receive(reply(["jobs-a", "jobs-b"], { recovery: { "jobs-a": "ok", "jobs-b": "expired" },
    positions: { "jobs-a": P(7), "jobs-b": P(20) } }));
  assert.deepEqual(of("gap").at(-1), { group: "jobs-b", status: "expired" });
  assert.deepEqual(of("subscribed").at(-1).recovery, { "jobs-a": "ok", "jobs-b": "expired" });
});

test("reconnect: the in-flight subscribe is re-sent and its promise resolves", async () => {
  const { client, ws, clock, of } = await opened();
  const a = client.subscribe({ jobs: ["a"] });
  await flush();
  ws.serverClose(1001, "going away");
  assert.deepEqual(of("state").at(-1), { state: "waiting", code: 1001, reason: "going away", delay: 125 });
  await clock.advance(125);
  const ws2 = FakeWebSocket.last();
  ws2.open();
  await flush();
  assert.deepEqual(ws2.sentJson()[0].groups, { jobs: ["a"] });
  ws2.receive(reply(["jobs-a"]));
  assert.deepEqual((await a).current, ["jobs-a"]);
});

test("backoff: grows per failure, resets once a subscription reply arrived", async () => {
  const { client, clock, of } = await makeClient({}, sdk);
  client.subscribe({ jobs: ["a"] });
  for (let i = 0; i < 4; i++) {
    await flush();
    FakeWebSocket.last().serverClose(1006);
    await clock.advance(60000);
  }
  assert.deepEqual(of("state").filter((s) => s.state === "waiting").map((s) => s.delay), [125, 250, 500, 1000]);
  const ws = FakeWebSocket.last();
  ws.open();
  await flush();
  ws.receive(reply(["jobs-a"]));
  ws.serverClose(1011);
  assert.equal(of("state").at(-1).delay, 125);
});

test("close codes: 4403 kicked, 1002 protocol stop for good; close() stops", async () => {
  for (const [code, why] of [[4403, "kicked"], [1002, "protocol"], [1009, "protocol"]]) {
    const { client, ws, clock, of } = await opened();
    const p = client.subscribe({ jobs: ["a"] });
    await flush();
    ws.serverClose(code, "x");
    await assert.rejects(p, (e) => e.code === "stopped");
    await clock.advance(120000);
    assert.equal(FakeWebSocket.instances.length, 1, "no reconnect");
    assert.deepEqual(of("stopped"), [{ code, reason: "x", why }]);
    assert.equal(client.state, "stopped");
    await assert.rejects(client.subscribe({}), (e) => e.code === "stopped");
  }
  const { client, ws, clock, of } = await opened();
  client.close();
  assert.deepEqual(ws.closed, { code: 1000, reason: undefined });
  assert.equal(of("stopped")[0].why, "closed");
  await clock.advance(120000);
  client.connect();
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1);
});

test("auth: 4401 and a 403 handshake fetch a fresh token; a static token stops", async () => {
  let n = 0;
  const { clock, ws } = await opened({ token: async () => `tok${++n}` });
  assert.match(ws.url, /token=tok1$/);
  ws.serverClose(4401, "credential expired");
  await clock.advance(60000);
  assert.match(FakeWebSocket.last().url, /token=tok2$/);
  FakeWebSocket.last().refuse(403);
  await clock.advance(60000);
  assert.match(FakeWebSocket.last().url, /token=tok3$/);
  FakeWebSocket.last().refuse(503); // no credential problem: the same token again
  await clock.advance(60000);
  assert.match(FakeWebSocket.last().url, /token=tok3$/);

  const s = await makeClient({ token: "static" }, sdk);
  s.client.connect();
  await flush();
  FakeWebSocket.last().refuse(403);
  assert.deepEqual(s.of("stopped"), [{ code: 1006, reason: "", why: "auth" }]);

  // No token at all (cookies): a 4401 is retried, the browser's cookie re-admits.
  const c = await opened({});
  c.ws.serverClose(4401);
  assert.equal(c.client.state, "waiting");
});

test("auth: two failures before open in a row ask for a fresh token (browsers hide the 403)", async () => {
  let n = 0;
  const { client, clock } = await makeClient({ token: () => `tok${++n}` }, sdk);
  client.connect();
  await flush();
  FakeWebSocket.last().serverClose(1006);
  await clock.advance(60000);
  assert.match(FakeWebSocket.last().url, /token=tok1$/);
  FakeWebSocket.last().serverClose(1006);
  await clock.advance(60000);
  assert.match(FakeWebSocket.last().url, /token=tok2$/);
});

test("heartbeat: 65 s of silence before the first heartbeat, then 2N + 5 s; pings and messages reset it", async () => {
  const { client, ws, clock, of } = await opened({ token: "t" });
  await clock.advance(64000);
  ws.ping();
  await clock.advance(64000);
  ws.receive({ heartbeat: 1000 });
  await clock.advance(6900);
  assert.equal(client.state, "open");
  ws.receive(env("g", 1));
  await clock.advance(6900);
  assert.equal(client.state, "open");
  await clock.advance(200);
  assert.equal(ws.terminated, true);
  assert.deepEqual(of("state").at(-1), { state: "waiting", code: 4000, reason: "heartbeat timeout", delay: 125 });
  await clock.advance(125);
  const ws2 = FakeWebSocket.last();
  assert.notEqual(ws2, ws);
  ws2.open();
  // A new connection assumes N = 30 s again (heartbeatTimeout).
  await clock.advance(64999);
  assert.equal(client.state, "open");
  await clock.advance(2);
  assert.equal(client.state, "waiting");
});

test("heartbeat: a handshake into a black hole counts as silence; heartbeatTimeout option", async () => {
  const { client, clock } = await makeClient({ heartbeatTimeout: 3000 }, sdk);
  client.connect();
  await clock.advance(2999);
  assert.equal(client.state, "connecting");
  await clock.advance(2);
  assert.equal(client.state, "waiting");
  assert.equal(FakeWebSocket.last().terminated, true);
});

test("refresh: at exp - margin the callback's token is sent; next from the new exp", async () => {
  const base = 1_700_000_000; // the fake clock's start, in seconds
  let n = 0;
  const tokens = [jwt({ exp: base + 600 }), jwt({ exp: base + 1200 }), "bad", jwt({ exp: base + 3000 })];
  const { client, ws, clock, of } = await opened({ token: () => tokens[n++] });
  await idle(clock, ws, 539000);
  assert.equal(ws.sent.length, 0);
  await clock.advance(1000); // exp - 60 s
  assert.deepEqual(ws.sentJson(), [{ token: tokens[1] }]);
  // A subscribe waits behind the refresh: one request at a time.
  const p = client.subscribe({ jobs: ["a"] });
  await flush();
  assert.equal(ws.sent.length, 1);
  ws.receive({ refreshed: true, expires: base + 1230 });
  await flush();
  assert.deepEqual(of("refreshed"), [{ expires: base + 1230 }]);
  assert.equal(ws.sent.length, 2);
  ws.receive(reply(["jobs-a"]));
  await p;
  await idle(clock, ws, 600000); // the next at 1200 - 60 s
  assert.deepEqual(ws.sentJson()[2], { token: "bad" });
  ws.receive({ error: "token refused: bad signature" });
  await clock.advance(9999);
  assert.equal(ws.sent.length, 3);
  await clock.advance(1);
  assert.deepEqual(ws.sentJson()[3], { token: tokens[3] });
  assert.equal(client.state, "open");
});

test("refresh: margin at most half the remaining life; a static token never refreshes", async () => {
  const base = 1_700_000_000;
  const { ws, clock } = await opened({ token: () => jwt({ exp: base + 60 }), refreshMargin: 60000 });
  await clock.advance(29999);
  assert.equal(ws.sent.length, 0);
  await clock.advance(1);
  assert.equal(ws.sent.length, 1);

  const s = await opened({ token: jwt({ exp: base + 60 }) });
  await idle(clock, s.ws, 600000);
  assert.equal(s.ws.sent.length, 0);
  assert.equal(s.client.state, "open");
});

test("listeners: an exception in one does not break the client; it is reported", async () => {
  const errors = [];
  const { client, ws } = await opened({ onListenerError: (e) => errors.push(e.message) });
  const seen = [];
  client.on("event", () => { throw new Error("listener bug"); });
  client.on("event", (e) => seen.push(e.position));
  client.onGroup("jobs-a", () => { throw new Error("group listener bug"); });
  client.subscribe({ jobs: ["a"] });
  await flush();
  ws.receive(reply(["jobs-a"]));
  ws.receive(env("jobs-a", 1));
  ws.receive(env("jobs-a", 2));
  assert.deepEqual(seen, [P(1), P(2)]);
  assert.deepEqual(errors, ["listener bug", "group listener bug", "listener bug", "group listener bug"]);
  assert.equal(client.positions["jobs-a"], P(2));
});

test("bound: 10,000 subscribe() calls waiting behind the one in flight, then \"busy\"; two replies settle them all", async () => {
  const { client, ws } = await opened();
  const calls = [];
  for (let i = 0; i < 10001; i++) calls.push(client.subscribe({ jobs: ["status_changed"] }));
  await assert.rejects(client.subscribe({ jobs: ["status_changed"] }),
    (e) => e instanceof WsgwError && e.code === "busy");
  assert.equal(ws.sent.length, 1, "one request with the gateway, the later calls wait coalesced");
  ws.receive(reply([G1], { positions: { [G1]: P(1) } }));
  await flush();
  assert.equal(ws.sent.length, 2, "the 10,000 later calls: one request");
  ws.receive(reply([G1], { groups_joined: [], positions: { [G1]: P(1) } }));
  const settled = await Promise.all(calls);
  assert.equal(settled.length, 10001);
  assert.deepEqual(settled[10000].current, [G1]);
  const again = client.subscribe({ jobs: ["status_changed"] }); // room again: not "busy"
  await flush();
  ws.receive(reply([G1], { groups_joined: [], positions: { [G1]: P(1) } }));
  assert.deepEqual((await again).current, [G1]);
});
