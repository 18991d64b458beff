// pure.test.js - the SDK's pure helpers: backoff, JWT exp, group names,
// message classification, close-code policy.
//
// Owns: tables of inputs and expected outputs. Must not: open connections.

import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, classify, closePolicy, groupNames, jwtExp } from "../../src/wsgw.js";
import { jwt } from "./fake.js";

const B = { initial: 250, max: 30000, factor: 2 };

test("backoff: full jitter below min(max, initial * factor^n)", () => {
  assert.equal(backoffDelay(0, B, () => 0), 0);
  assert.equal(backoffDelay(0, B, () => 0.999999), 249);
  assert.equal(backoffDelay(3, B, () => 0.5), 1000); // cap 2000
  assert.equal(backoffDelay(7, B, () => 0.5), 15000); // cap 32000 -> 30000
  assert.equal(backoffDelay(50, B, () => 0.5), 15000);
  assert.equal(backoffDelay(2000, B, () => 0.5), 15000); // factor^n = Infinity: still capped
  for (let n = 0; n < 20; n++) {
    const d = backoffDelay(n, B);
    assert.ok(d >= 0 && d < Math.min(30000, 250 * 2 ** n), `${n}: ${d}`);
  }
});

test("jwtExp: the exp of a JWT, null for anything else", () => {
  assert.equal(jwtExp(jwt({ sub: "7", exp: 1733564400 })), 1733564400);
  // base64url with - and _, no padding; UTF-8 claims
  assert.equal(jwtExp(jwt({ sub: "ü?>>>", exp: 5, x: "~~~???" })), 5);
  assert.equal(jwtExp(jwt({ sub: "7" })), null);
  assert.equal(jwtExp(jwt({ exp: "1733564400" })), null);
  assert.equal(jwtExp(jwt([1, 2])), null);
  assert.equal(jwtExp("a.b"), null);
  assert.equal(jwtExp("a..c"), null);
  assert.equal(jwtExp("a.%%%.c"), null);
  assert.equal(jwtExp("opaque-session-credential"), null);
  assert.equal(jwtExp(null), null);
  assert.equal(jwtExp(`x.${Buffer.from("null").toString("base64url")}.y`), null);
});

test("groupNames: lists expand to key-value, scalars name the key", () => {
  assert.deepEqual(groupNames({ jobs: ["status_changed", "summary"], job_events: [42], control: true,
    schedules: null, empty: [], obj: {} }), ["jobs-status_changed", "jobs-summary", "job_events-42",
    "control", "schedules"]);
  assert.deepEqual(groupNames({}), []);
});

const ctx = (o = {}) => ({ v2: true, greeted: true, inFlight: null, ...o });

test("classify: wsgw.2 messages", () => {
  assert.equal(classify({ accept: true, user: 7 }, ctx({ greeted: false })), "greeting");
  assert.equal(classify({ heartbeat: 20000 }, ctx()), "heartbeat");
  assert.equal(classify({ group: "g", position: "1-0123456789ab", text: "{}" }, ctx()), "event");
  assert.equal(classify({ group: "g", position: "1-0123456789ab", text: "{}" },
    ctx({ inFlight: "subscribe" })), "event");
  assert.equal(classify({ groups_current: [], groups_joined: [], groups_left: [], positions: {} },
    ctx({ inFlight: "subscribe" })), "reply");
  assert.equal(classify({ recovery: { g: "expired" }, positions: {} }, ctx()), "notice");
  assert.equal(classify({ refreshed: true, expires: 5 }, ctx({ inFlight: "refresh" })), "refresh");
  assert.equal(classify({ error: "access denied to channel jobs" }, ctx({ inFlight: "subscribe" })), "refusal");
  assert.equal(classify({ error: "access denied to channel jobs" }, ctx()), "message"); // a recheck
  assert.equal(classify({ error: "invalid JSON" }, ctx({ inFlight: "subscribe" })), "error");
  assert.equal(classify({ error: "token refused: bad signature" }, ctx({ inFlight: "refresh" })), "error");
  assert.equal(classify({ error: "no worker answered in time" }, ctx()), "message");
  assert.equal(classify({ error: "server busy, try again later" }, ctx({ inFlight: "refresh" })), "error");
  assert.equal(classify({ error: "access denied to channel job_events for resource id 42" },
    ctx({ inFlight: "refresh" })), "message");
  // Not quite an envelope, not anything else: a message, never an event.
  assert.equal(classify({ group: "g", position: "1-0123456789ab", text: "{}", x: 1 }, ctx()), "message");
  assert.equal(classify({ group: "g", position: 5, text: "{}" }, ctx()), "message");
  assert.equal(classify(undefined, ctx()), "message");
  assert.equal(classify([1], ctx()), "message");
  // A reply shape while no subscribe is in flight is not a reply.
  assert.equal(classify({ groups_current: [] }, ctx()), "message");
  assert.equal(classify({ heartbeat: 1.5 }, ctx()), "message");
  assert.equal(classify({ accept: true, user: 7 }, ctx()), "message");
});

test("classify: the old protocol makes every unknown message an event", () => {
  const old = (o = {}) => ctx({ v2: false, ...o });
  assert.equal(classify({ accept: true, user: 7 }, old({ greeted: false })), "greeting");
  assert.equal(classify({ heartbeat: 20000 }, old()), "event"); // never sent on the old protocol
  assert.equal(classify({ group: "g", position: "1-0123456789ab", text: "{}" }, old()), "event");
  assert.equal(classify({ status: "running" }, old()), "event");
  assert.equal(classify(undefined, old()), "event"); // not JSON: raw text event
  assert.equal(classify(42, old()), "event");
  assert.equal(classify({ recovery: {} }, old()), "event");
  assert.equal(classify({ groups_current: [] }, old({ inFlight: "subscribe" })), "reply");
  assert.equal(classify({ error: "x" }, old()), "message");
});

test("closePolicy: stop, get a credential, or retry", () => {
  assert.equal(closePolicy(4403), "kicked");
  for (const c of [1002, 1003, 1007, 1009, 1010]) assert.equal(closePolicy(c), "protocol");
  assert.equal(closePolicy(4401), "auth");
  assert.equal(closePolicy(1006, 403), "auth");
  assert.equal(closePolicy(1006, 401), "auth");
  for (const c of [1000, 1001, 1006, 1008, 1011, 1012, 1013, 1014, 4000]) assert.equal(closePolicy(c), "retry");
  assert.equal(closePolicy(1006, 503), "retry");
});
