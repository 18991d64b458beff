// fake.js - a fake WebSocket and a manual clock for the SDK's unit tests.
//
// Owns: FakeWebSocket (records what the client sends; the test plays the
// server: open, messages, pings, closes, refused handshakes the way `ws`
// reports them) and FakeClock (timers that run only when the test advances
// time). Must not: touch the network or real timers.

export class FakeWebSocket {
  static instances = [];

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.protocol = "";
    this.sent = [];
    this.closed = null; // {code, reason} once the client closed it
    this.terminated = false;
    this.handlers = new Map();
    FakeWebSocket.instances.push(this);
  }

  static reset() {
    FakeWebSocket.instances = [];
  }

  static last() {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  }

  // -- what the client calls
  send(text) {
    if (typeof text !== "string") throw new TypeError("the SDK sends text");
    this.sent.push(text);
  }

  close(code, reason) {
    this.closed = { code, reason };
  }

  terminate() {
    this.terminated = true;
  }

  on(name, fn) {
    this.handlers.set(name, fn);
  }

  // -- what the test (the server) does
  sentJson() {
    return this.sent.map((t) => JSON.parse(t));
  }

  open(protocol = "wsgw.2", greeting = { accept: true, user: 7 }) {
    this.protocol = protocol;
    this.onopen && this.onopen({});
    if (greeting) this.receive(greeting);
  }

  receive(msg) {
    this.onmessage && this.onmessage({ data: typeof msg === "string" ? msg : JSON.stringify(msg) });
  }

  ping() {
    const fn = this.handlers.get("ping");
    fn && fn(Buffer.alloc(0));
  }

  serverClose(code, reason = "") {
    this.onclose && this.onclose({ code, reason });
  }

  refuse(status) {
    this.onerror && this.onerror({ message: `Unexpected server response: ${status}` });
    this.onclose && this.onclose({ code: 1006, reason: "" });
  }
}

export class FakeClock {
  constructor(start = 1_700_000_000_000) {
    this.t = start;
    this.timers = new Map();
    this.nextId = 1;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { fn, at: this.t + ms });
      return id;
    };
    this.clearTimeout = (id) => this.timers.delete(id);
    this.now = () => this.t;
  }

  // Runs every timer due within ms, in time order, letting promises settle
  // between them.
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await flush();
      let next = null;
      for (const [id, tm] of this.timers) {
        if (tm.at <= end && (next === null || tm.at < next[1].at)) next = [id, tm];
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
    await flush();
  }

  pending() {
    return [...this.timers.values()].map((tm) => tm.at - this.t).sort((a, b) => a - b);
  }
}

export async function flush() {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

const b64url = (s) => Buffer.from(s).toString("base64url");

// An unsigned-looking JWT (the SDK never checks signatures, only reads exp).
export function jwt(claims) {
  return `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64url(JSON.stringify(claims))}.sig`;
}

// A client with the fakes; returns {client, clock, log} where log collects
// every event the client emits as [name, arg].
export async function makeClient(options = {}, { WsgwClient }) {
  FakeWebSocket.reset();
  const clock = new FakeClock();
  const client = new WsgwClient("ws://gw.test/websocket/", {
    WebSocket: FakeWebSocket,
    clock,
    random: () => 0.5,
    ...options,
  });
  const log = [];
  for (const name of ["event", "gap", "state", "stopped", "refreshed", "message", "subscribed"]) {
    client.on(name, (arg) => log.push([name, arg]));
  }
  return { client, clock, log, of: (name) => log.filter((x) => x[0] === name).map((x) => x[1]) };
}
