// wsgw.js - the browser and Node client of the wsgw gateway (docs/PROTOCOL.md).
//
// Owns: one logical subscription over a sequence of websocket connections:
// connecting (token in the URL, wsgw.2 offered with wsgw.1, the old
// protocol's name, as the fallback), reconnecting with full-jitter
// backoff by close code, the subscription request queue (one request with the
// gateway at a time, later calls coalesce), positions and recovery (wsgw.2),
// duplicate dropping, the heartbeat dead-connection rule, JWT refresh before
// exp, and dispatching events to listeners.
// Must not: depend on anything but a WebSocket constructor and timers (no
// runtime dependencies; Node >= 18 and browsers); reconnect after a kick
// (4403) or a protocol error; keep unbounded state (positions are kept only
// for the current groups, unsettled subscribe() calls are capped); let a
// listener's exception break the client's state.

const DEFAULTS = Object.freeze({
  backoff: { initial: 250, max: 30000, factor: 2 },
  heartbeatTimeout: 65000, // 2 * 30000 + 5000: the rule for an assumed N = 30 s
  refreshMargin: 60000,
});
const REQUEST_RETRIES = 5; // gateway "try again later" answers retried per request
const REFRESH_RETRY_MS = 10000; // after a refused refresh
const REFRESH_MIN_MS = 1000; // never refresh in a tight loop (token close to exp)
const MAX_TIMER_MS = 2147483647; // setTimeout's limit: longer delays fire at once
const MAX_PENDING = 10000; // unsettled subscribe() calls; more is a caller bug
const STOP_PROTOCOL = new Set([1002, 1003, 1007, 1009, 1010]);
const RETRYABLE_ERRORS = new Set([
  "too many subscription changes, try again later",
  "server busy, try again later",
  "no worker answered in time",
]);
const REFUSAL_PREFIX = "access denied to channel";
const PROTOCOL_NAME = "wsgw.2";
// What is offered: a gateway without wsgw.2 (history off) names wsgw.1, the
// old protocol, since browsers (and ws) fail a 101 that names none of the
// offered subprotocols.
const OFFER = Object.freeze([PROTOCOL_NAME, "wsgw.1"]);
const EVENT_NAMES = ["event", "gap", "state", "stopped", "refreshed", "message", "subscribed"];

/** The error subscribe() rejects with: code "request" (the gateway refused the
 * request as a whole; message is its text), "stopped" (the client stopped
 * first) or "busy" (too many unsettled calls). */
export class WsgwError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "WsgwError";
    this.code = code;
  }
}

// ---------------------------------------------------------------- helpers
// Pure functions, exported for the unit tests (and useful to callers).

/** Full jitter: a uniform delay in [0, min(max, initial * factor^attempt)). */
export function backoffDelay(attempt, backoff, random = Math.random) {
  const cap = Math.min(backoff.max, backoff.initial * Math.pow(backoff.factor, attempt));
  return Math.floor(random() * cap);
}

/** The `exp` claim (seconds) of a JWT, or null when the string is not a JWT
 * with a numeric exp. Never throws: a token is opaque unless it parses. */
export function jwtExp(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3 || parts[1].length === 0) return null;
  try {
    let b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    b64 += "===".slice((b64.length + 3) % 4);
    const bin = atob(b64);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    const exp = claims && typeof claims === "object" ? claims.exp : undefined;
    return typeof exp === "number" && Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

/** The group names a subscription object asks for (PROTOCOL.md, Subscribing):
 * `k: [a, b]` is k-a and k-b, `k: v` (not a list, not an object) is k. */
export function groupNames(groups) {
  const names = [];
  for (const [key, value] of Object.entries(groups || {})) {
    if (Array.isArray(value)) {
      for (const item of value) names.push(`${key}-${item}`);
    } else if (value === null || typeof value !== "object") {
      names.push(key);
    }
  }
  return names;
}

function isPlainObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function isEnvelope(m) {
  const keys = Object.keys(m);
  return keys.length === 3 && typeof m.group === "string" &&
    typeof m.position === "string" && typeof m.text === "string";
}

/** What a parsed server message is. msg: the parsed JSON (undefined when the
 * text is not JSON); v2: the connection speaks wsgw.2; greeted: the greeting
 * was seen on this connection; inFlight: "subscribe" | "refresh" | null.
 * Returns "greeting" | "heartbeat" | "reply" | "notice" | "refresh" |
 * "refusal" | "error" | "event" | "message". */
export function classify(msg, { v2, greeted, inFlight }) {
  if (!isPlainObject(msg)) return v2 ? "message" : "event";
  if (!greeted && "accept" in msg) return "greeting";
  if (v2 && Object.keys(msg).length === 1 && Number.isInteger(msg.heartbeat)) return "heartbeat";
  if (v2 && isEnvelope(msg)) return "event";
  if (inFlight === "subscribe" && Array.isArray(msg.groups_current)) return "reply";
  if (v2 && isPlainObject(msg.recovery) && !("groups_current" in msg)) return "notice";
  if (inFlight === "refresh" && msg.refreshed === true) return "refresh";
  if (Object.keys(msg).length === 1 && typeof msg.error === "string") {
    const denied = msg.error.startsWith(REFUSAL_PREFIX);
    if (inFlight === "subscribe") return denied ? "refusal" : "error";
    // A re-check's "access denied" during a refresh is not the refresh's answer.
    if (inFlight === "refresh" && !denied) return "error";
    return "message";
  }
  return v2 ? "message" : "event";
}

/** The close-code policy: "kicked" | "protocol" | "auth" (stop or get a fresh
 * credential) | "retry". status: the refused handshake's HTTP status, if known. */
export function closePolicy(code, status) {
  if (code === 4403) return "kicked";
  if (STOP_PROTOCOL.has(code)) return "protocol";
  if (code === 4401 || status === 401 || status === 403) return "auth";
  return "retry";
}

function validateOptions(url, o) {
  if (typeof url !== "string" || !/^wss?:\/\//i.test(url)) {
    throw new TypeError(`WsgwClient: url must be a ws:// or wss:// URL, got ${String(url)}`);
  }
  const t = o.token;
  if (t !== undefined && t !== null && typeof t !== "string" && typeof t !== "function") {
    throw new TypeError("WsgwClient: token must be a string or a function");
  }
  const x = o.xrftoken;
  if (x !== undefined && x !== null && typeof x !== "string" && typeof x !== "function") {
    throw new TypeError("WsgwClient: xrftoken must be a string, a function or null");
  }
  if (o.protocol !== undefined && o.protocol !== null && o.protocol !== PROTOCOL_NAME) {
    throw new TypeError(`WsgwClient: protocol must be "${PROTOCOL_NAME}" or null`);
  }
  const b = { ...DEFAULTS.backoff, ...(o.backoff || {}) };
  for (const k of ["initial", "max", "factor"]) {
    if (typeof b[k] !== "number" || !(b[k] > 0)) {
      throw new TypeError(`WsgwClient: backoff.${k} must be a positive number`);
    }
  }
  for (const k of ["heartbeatTimeout", "refreshMargin"]) {
    if (o[k] !== undefined && (typeof o[k] !== "number" || !(o[k] >= 0))) {
      throw new TypeError(`WsgwClient: ${k} must be a number of milliseconds >= 0`);
    }
  }
  return b;
}

function browserCsrfToken() {
  const doc = globalThis.document;
  if (!doc || typeof doc.cookie !== "string") return null;
  for (const part of doc.cookie.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === "csrftoken") return part.slice(eq + 1).trim();
  }
  return null;
}

// ---------------------------------------------------------------- client

export class WsgwClient {
  constructor(url, options = {}) {
    this._backoff = validateOptions(url, options);
    this._url = url;
    this._tokenOpt = options.token ?? null;
    this._xrfOpt = options.xrftoken === undefined ? browserCsrfToken : options.xrftoken;
    this._WS = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WS !== "function") {
      throw new TypeError("WsgwClient: no WebSocket; pass options.WebSocket (Node: the ws package)");
    }
    this._offer = options.protocol === null ? null : OFFER;
    this._hbDefault = options.heartbeatTimeout ?? DEFAULTS.heartbeatTimeout;
    this._margin = options.refreshMargin ?? DEFAULTS.refreshMargin;
    // Injectable for tests: timers, clock and the jitter source.
    const c = options.clock || {};
    this._setTimeout = c.setTimeout || ((f, ms) => setTimeout(f, ms));
    this._clearTimeout = c.clearTimeout || ((id) => clearTimeout(id));
    this._now = c.now || (() => Date.now());
    this._random = options.random || Math.random;
    // Where a listener's exception goes: reported (browsers: the console and
    // window.onerror), never thrown through the client mid-update.
    this._report = options.onListenerError || defaultReport;

    this._listeners = new Map(EVENT_NAMES.map((n) => [n, new Set()]));
    this._groupListeners = new Map(); // group -> Set(fn)
    this._state = "idle";
    this._user = null;
    this._protocol = "";
    this._positions = new Map(); // group -> position, current groups only
    this._token = null; // the credential last obtained (string)
    this._needFreshToken = false;
    this._attempt = 0; // backoff exponent, reset by a subscription reply
    this._failuresBeforeOpen = 0;
    this._skipOffer = false; // the next connection offers no subprotocol (see _lost)
    this._conn = null; // per-connection state, see _open()
    this._reconnectTimer = null;
    this._desired = null; // the latest subscribe() set
    this._subDirty = false; // _desired not yet sent on this connection
    this._pending = []; // waiters of the next subscribe request
    this._retryTimer = null; // a "try again later" pause before re-sending
    this._retries = 0;
  }

  get state() { return this._state; }
  get user() { return this._user; }
  get protocol() { return this._protocol; }
  get positions() { return Object.fromEntries(this._positions); }

  on(name, fn) {
    this._set(name).add(fn);
    return this;
  }

  off(name, fn) {
    this._set(name).delete(fn);
    return this;
  }

  onGroup(group, fn) {
    if (typeof group !== "string" || typeof fn !== "function") {
      throw new TypeError("WsgwClient.onGroup(group: string, fn: function)");
    }
    let set = this._groupListeners.get(group);
    if (!set) this._groupListeners.set(group, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this._groupListeners.get(group) === set) this._groupListeners.delete(group);
    };
  }

  connect() {
    if (this._state === "idle") this._open();
    return this;
  }

  subscribe(groups) {
    if (!isPlainObject(groups)) {
      return Promise.reject(new TypeError("WsgwClient.subscribe: groups must be an object"));
    }
    if (this._state === "stopped") return Promise.reject(new WsgwError("stopped", "client stopped"));
    if (this._pending.length >= MAX_PENDING) {
      return Promise.reject(new WsgwError("busy", "too many unsettled subscribe() calls"));
    }
    let snapshot; // later edits by the caller must not leak into what is re-sent
    try {
      snapshot = JSON.parse(JSON.stringify(groups));
    } catch (e) {
      return Promise.reject(new TypeError(`WsgwClient.subscribe: groups is not JSON: ${e.message}`));
    }
    this._desired = snapshot;
    this._subDirty = true;
    const p = new Promise((resolve, reject) => this._pending.push({ resolve, reject }));
    this.connect();
    this._pump();
    return p;
  }

  close() {
    this._stop(1000, "", "closed");
  }

  // ------------------------------------------------------------ internals

  _set(name) {
    const set = this._listeners.get(name);
    if (!set) throw new TypeError(`WsgwClient: unknown event "${name}" (one of ${EVENT_NAMES.join(", ")})`);
    return set;
  }

  // A listener's exception is reported on its own (visible) rather than
  // unwinding through the client in the middle of a state change.
  _emit(name, arg) {
    for (const fn of [...this._listeners.get(name)]) this._call(fn, arg);
  }

  _call(fn, arg) {
    try {
      fn(arg);
    } catch (e) {
      this._report(e);
    }
  }

  _setState(state, extra = {}) {
    this._state = state;
    this._emit("state", { state, ...extra });
  }

  _timer(ms, fn) {
    return this._setTimeout(fn, Math.max(0, Math.min(MAX_TIMER_MS, ms)));
  }

  _clear(id) {
    if (id !== null && id !== undefined) this._clearTimeout(id);
    return null;
  }

  // -- connecting

  async _credential() {
    const t = this._tokenOpt;
    if (t === null) return null;
    if (typeof t === "string") return t;
    if (this._token === null || this._needFreshToken) {
      const fresh = await t();
      if (typeof fresh !== "string" || fresh === "") throw new TypeError("token callback returned no string");
      this._token = fresh;
      this._needFreshToken = false;
    }
    return this._token;
  }

  _urlWith(token) {
    if (token === null) return this._url;
    const sep = this._url.includes("?") ? "&" : "?";
    return `${this._url}${sep}token=${encodeURIComponent(token)}`;
  }

  _open() {
    this._reconnectTimer = this._clear(this._reconnectTimer);
    const conn = { ws: null, opened: false, greeted: false, hbMs: null, hbTimer: null,
      inFlight: null, refused: [], recover: true, status: undefined, refreshTimer: null,
      refreshToken: null, noSubprotocol: false, done: false };
    const offer = this._skipOffer ? null : this._offer;
    this._skipOffer = false;
    this._conn = conn;
    this._setState("connecting");
    // The dead-connection timer runs from now: a handshake into a black hole
    // counts like a silent connection.
    this._armHeartbeat(conn);
    this._credential().then((token) => {
      if (this._conn !== conn || conn.done) return;
      const protocols = offer ? [...offer] : undefined;
      let ws;
      try {
        ws = new this._WS(this._urlWith(token), protocols);
      } catch (e) {
        this._lost(conn, 1006, `cannot connect: ${e && e.message}`);
        return;
      }
      conn.ws = ws;
      this._attach(conn, ws);
    }, (e) => {
      if (this._conn === conn && !conn.done) this._lost(conn, 1006, `token callback failed: ${e && e.message}`);
    });
  }

  _attach(conn, ws) {
    ws.onopen = () => this._onOpen(conn);
    ws.onmessage = (ev) => this._onMessage(conn, ev.data);
    ws.onerror = (ev) => {
      // ws reveals a refused handshake's status in the error's message, and
      // fails a 101 that names no subprotocol when some were offered (a
      // gateway from before wsgw.1, its history off).
      const text = (ev && (ev.message || (ev.error && ev.error.message))) || "";
      const m = /Unexpected server response: (\d{3})/.exec(text);
      if (m) conn.status = Number(m[1]);
      if (/Server sent no subprotocol/.test(text)) conn.noSubprotocol = true;
    };
    ws.onclose = (ev) => this._lost(conn, ev.code, ev.reason || "");
    // ws (Node) exposes pings; browsers answer them unseen.
    if (typeof ws.on === "function") ws.on("ping", () => this._armHeartbeat(conn));
  }

  _onOpen(conn) {
    if (this._conn !== conn || conn.done) return;
    conn.opened = true;
    this._failuresBeforeOpen = 0;
    this._protocol = conn.ws.protocol === PROTOCOL_NAME ? PROTOCOL_NAME : "";
    this._armHeartbeat(conn);
    this._setState("open");
    if (this._desired !== null) this._subDirty = true;
    this._scheduleRefresh(conn, this._currentToken());
    this._pump();
  }

  _currentToken() {
    return typeof this._tokenOpt === "function" ? this._token : null;
  }

  // -- the heartbeat rule (spec section 1): silence longer than 2N + 5 s after
  // a heartbeat of N ms, or heartbeatTimeout before the first, is death.
  _armHeartbeat(conn) {
    conn.hbTimer = this._clear(conn.hbTimer);
    if (conn.done) return;
    const ms = conn.hbMs === null ? this._hbDefault : 2 * conn.hbMs + 5000;
    conn.hbTimer = this._timer(ms, () => {
      if (this._conn !== conn || conn.done) return;
      this._lost(conn, 4000, "heartbeat timeout", true);
    });
  }

  // -- closing and reconnecting

  _detach(conn, dropSocket, code = 4000, reason = "") {
    conn.done = true;
    conn.hbTimer = this._clear(conn.hbTimer);
    conn.refreshTimer = this._clear(conn.refreshTimer);
    const ws = conn.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = () => {}; // ws emits "error" on an aborted handshake; keep it handled
    if (dropSocket) {
      try {
        if (typeof ws.terminate === "function") ws.terminate();
        else ws.close(code, reason);
      } catch { /* already closing */ }
    }
  }

  // The connection ended (closed, failed, or declared dead): requeue what was
  // in flight, then stop or wait by the close-code policy.
  _lost(conn, code, reason, dead = false) {
    if (this._conn !== conn || conn.done) return;
    this._detach(conn, dead, 4000, reason);
    this._conn = null;
    if (conn.inFlight && conn.inFlight.kind === "subscribe") {
      this._pending = conn.inFlight.waiters.concat(this._pending);
    }
    if (this._desired !== null) this._subDirty = true;
    this._retryTimer = this._clear(this._retryTimer);
    this._retries = 0;
    if (conn.noSubprotocol && !conn.opened) {
      // A gateway from before wsgw.1 with its history off, under ws: at once
      // again without offering anything. The next reconnect offers again.
      this._skipOffer = true;
      this._setState("waiting", { code, reason: "server chose no subprotocol", delay: 0 });
      this._reconnectTimer = this._timer(0, () => {
        this._reconnectTimer = null;
        if (this._state === "waiting") this._open();
      });
      return;
    }
    const policy = closePolicy(code, conn.opened ? undefined : conn.status);
    if (policy === "kicked" || policy === "protocol") {
      this._stop(code, reason, policy);
      return;
    }
    if (policy === "auth") {
      if (typeof this._tokenOpt === "string") {
        this._stop(code, reason, "auth");
        return;
      }
      this._needFreshToken = true;
    } else if (!conn.opened) {
      // Browsers hide a refused handshake's status (it looks like 1006):
      // after two failures in a row with one credential, ask for a fresh one.
      this._failuresBeforeOpen += 1;
    }
    if (this._failuresBeforeOpen >= 2) this._needFreshToken = true;
    if (this._needFreshToken) this._failuresBeforeOpen = 0;
    const delay = backoffDelay(this._attempt, this._backoff, this._random);
    this._attempt += 1;
    this._setState("waiting", { code, reason, delay });
    this._reconnectTimer = this._timer(delay, () => {
      this._reconnectTimer = null;
      if (this._state === "waiting") this._open();
    });
  }

  _stop(code, reason, why) {
    if (this._state === "stopped") return;
    const conn = this._conn;
    this._conn = null;
    if (conn && !conn.done) {
      const ws = conn.ws;
      this._detach(conn, false);
      if (ws) {
        try {
          ws.close(1000);
        } catch { /* not open yet or already closing */ }
      }
    }
    if (conn && conn.inFlight && conn.inFlight.kind === "subscribe") {
      this._pending = conn.inFlight.waiters.concat(this._pending);
    }
    this._reconnectTimer = this._clear(this._reconnectTimer);
    this._retryTimer = this._clear(this._retryTimer);
    const waiters = this._pending;
    this._pending = [];
    this._setState("stopped", { code, reason });
    for (const w of waiters) w.reject(new WsgwError("stopped", `client stopped (${why})`));
    this._emit("stopped", { code, reason, why });
  }

  // -- requests: one with the gateway at a time

  _pump() {
    const conn = this._conn;
    if (!conn || !conn.opened || conn.done || conn.inFlight) return;
    invariant(this._state === "open", "a request on a connection not open");
    if (conn.refreshToken !== null) {
      const token = conn.refreshToken;
      conn.refreshToken = null;
      conn.inFlight = { kind: "refresh", token };
      this._send(conn, { token });
      return;
    }
    if (this._subDirty && this._retryTimer === null && this._desired !== null) {
      const req = { groups: this._desired, xrftoken: this._xrftoken() };
      if (conn.recover && this._protocol === PROTOCOL_NAME) {
        const positions = {};
        for (const g of groupNames(this._desired)) {
          if (this._positions.has(g)) positions[g] = this._positions.get(g);
        }
        if (Object.keys(positions).length > 0) req.positions = positions;
      }
      this._subDirty = false;
      conn.refused = [];
      conn.inFlight = { kind: "subscribe", waiters: this._pending };
      this._pending = [];
      this._send(conn, req);
    }
  }

  _xrftoken() {
    const x = this._xrfOpt;
    const v = typeof x === "function" ? x() : x;
    return typeof v === "string" ? v : null;
  }

  _send(conn, obj) {
    try {
      conn.ws.send(JSON.stringify(obj));
    } catch (e) {
      // The socket died under us; its close event requeues the request.
    }
  }

  // -- receiving

  _onMessage(conn, data) {
    if (this._conn !== conn || conn.done) return;
    this._armHeartbeat(conn);
    if (typeof data !== "string") return; // the gateway sends text only
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      msg = undefined;
    }
    const v2 = this._protocol === PROTOCOL_NAME;
    const inFlight = conn.inFlight ? conn.inFlight.kind : null;
    switch (classify(msg, { v2, greeted: conn.greeted, inFlight })) {
      case "greeting":
        conn.greeted = true;
        this._user = msg.user ?? null;
        return;
      case "heartbeat":
        conn.hbMs = msg.heartbeat;
        this._armHeartbeat(conn);
        return;
      case "event":
        this._onEvent(msg, data, v2);
        return;
      case "reply":
        this._onReply(conn, msg);
        return;
      case "notice":
        this._applyRecovery(msg.recovery, msg.positions, true);
        return;
      case "refusal":
        conn.refused.push(msg.error);
        return;
      case "refresh":
        this._onRefreshed(conn, msg);
        return;
      case "error":
        this._onRequestError(conn, msg.error);
        return;
      default:
        this._emit("message", msg === undefined ? data : msg);
    }
  }

  _onEvent(msg, raw, v2) {
    let ev;
    if (v2) {
      if (this._positions.get(msg.group) === msg.position) return; // a duplicate
      this._positions.set(msg.group, msg.position);
      ev = { group: msg.group, position: msg.position, text: msg.text, data: parseOrUndefined(msg.text) };
    } else {
      ev = { group: null, position: null, text: raw, data: parseOrUndefined(raw) };
    }
    this._emit("event", ev);
    const set = ev.group === null ? null : this._groupListeners.get(ev.group);
    if (set) for (const fn of [...set]) this._call(fn, ev);
  }

  _onReply(conn, msg) {
    const req = conn.inFlight;
    invariant(req && req.kind === "subscribe", "a reply without a subscribe in flight");
    conn.inFlight = null;
    conn.recover = false;
    this._attempt = 0;
    this._retries = 0;
    const current = new Set(msg.groups_current);
    for (const g of [...this._positions.keys()]) if (!current.has(g)) this._positions.delete(g);
    const recovery = isPlainObject(msg.recovery) ? msg.recovery : {};
    const positions = isPlainObject(msg.positions) ? msg.positions : {};
    this._applyRecovery(recovery, positions, false);
    const result = {
      current: msg.groups_current,
      joined: Array.isArray(msg.groups_joined) ? msg.groups_joined : [],
      left: Array.isArray(msg.groups_left) ? msg.groups_left : [],
      refused: conn.refused,
      recovery: { ...recovery },
      positions: { ...positions },
    };
    conn.refused = [];
    for (const w of req.waiters) w.resolve(result);
    // Also for the re-subscription after a reconnect, which no call awaits.
    this._emit("subscribed", result);
    this._pump();
  }

  // positions: set every one given; a notice naming a group in recovery but
  // not in positions forgets it. A status other than "ok" is a gap.
  _applyRecovery(recovery, positions, notice) {
    for (const [g, p] of Object.entries(positions || {})) {
      if (typeof p === "string") this._positions.set(g, p);
    }
    for (const [g, status] of Object.entries(recovery || {})) {
      if (notice && !(positions && g in positions)) this._positions.delete(g);
      if (status !== "ok") this._emit("gap", { group: g, status });
    }
  }

  _onRequestError(conn, text) {
    const req = conn.inFlight;
    invariant(req !== null, "a request error without a request in flight");
    conn.inFlight = null;
    if (req.kind === "refresh") {
      this._refreshLater(conn, REFRESH_RETRY_MS);
      this._pump();
      return;
    }
    conn.refused = [];
    if (RETRYABLE_ERRORS.has(text) && this._retries < REQUEST_RETRIES) {
      // Put the request back (it merges with any newer call) and pause.
      this._retries += 1;
      this._pending = req.waiters.concat(this._pending);
      this._subDirty = true;
      const delay = backoffDelay(this._retries, this._backoff, this._random);
      this._retryTimer = this._timer(delay, () => {
        this._retryTimer = null;
        this._pump();
      });
      this._pump();
      return;
    }
    this._retries = 0;
    for (const w of req.waiters) w.reject(new WsgwError("request", text));
    this._pump();
  }

  // -- token refresh: only a callback token is refreshed (a string cannot be
  // renewed); at exp - margin, margin at most half the remaining life.

  _scheduleRefresh(conn, token) {
    conn.refreshTimer = this._clear(conn.refreshTimer);
    const exp = jwtExp(token);
    if (exp === null || typeof this._tokenOpt !== "function") return;
    const left = exp * 1000 - this._now();
    const at = left - Math.min(this._margin, left / 2);
    this._refreshLater(conn, Math.max(REFRESH_MIN_MS, at));
  }

  _refreshLater(conn, ms) {
    conn.refreshTimer = this._clear(conn.refreshTimer);
    const due = this._now() + ms;
    const fire = () => {
      conn.refreshTimer = null;
      if (this._conn !== conn || conn.done) return;
      const rest = due - this._now();
      if (rest > 0) { // a delay past setTimeout's limit: wait again
        conn.refreshTimer = this._timer(rest, fire);
        return;
      }
      Promise.resolve().then(() => this._tokenOpt()).then((t) => {
        if (this._conn !== conn || conn.done) return;
        if (typeof t !== "string" || t === "") throw new TypeError("token callback returned no string");
        conn.refreshToken = t;
        this._pump();
      }).catch(() => {
        if (this._conn === conn && !conn.done) this._refreshLater(conn, REFRESH_RETRY_MS);
      });
    };
    conn.refreshTimer = this._timer(ms, fire);
  }

  _onRefreshed(conn, msg) {
    const req = conn.inFlight;
    invariant(req && req.kind === "refresh", "a refresh answer without a refresh in flight");
    conn.inFlight = null;
    this._token = req.token;
    this._scheduleRefresh(conn, req.token);
    this._emit("refreshed", { expires: msg.expires });
    this._pump();
  }
}

function defaultReport(e) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(e);
  else queueMicrotask(() => { throw e; }); // Node: an uncaught exception, as EventEmitter's would be
}

// An internal invariant broken: a bug in this file, never bad input.
function invariant(ok, what) {
  if (!ok) throw new Error(`wsgw-client: invariant broken: ${what}`);
}

function parseOrUndefined(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
