/*
 * app.js - behaviour of the wsgw event console (deploy/demo/index.html), an
 * ES module on top of the JS SDK (wsgw.js: a link to clients/js/src/wsgw.js,
 * installed beside this file; never a copy in the tree).
 *
 * Owns: one WsgwClient while connected, what the operator asks of it
 * (connect = connect and subscribe to the groups field; subscribe; leave
 * all; disconnect) and the log of what the SDK reports. Must not: speak the
 * protocol itself (the SDK reconnects, resubscribes with positions, sends
 * the csrftoken cookie as xrftoken), or reach another server: the websocket
 * goes to /websocket/ on the page's own origin only (the CSP says
 * connect-src 'self' too), because the xrftoken must not leave the site.
 * A token in the URL fills the field and is removed from the address bar;
 * it never connects by itself (connect=1 only acts without one). Received
 * text is shown with textContent only: events come from backends and must
 * never be interpreted as markup.
 */
import { WsgwClient } from "./wsgw.js";

const MAX_LOG = 1000; // entries kept: a busy job must not eat the tab's memory

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(window.location.search);
let client = null;
let eventCount = 0;

function defaultUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return scheme + "//" + window.location.host + "/websocket/";
}

function hasCookie(name) {
  return (document.cookie ? document.cookie.split(";") : [])
    .some((kv) => kv.trim().split("=", 1)[0] === name);
}

function setStatus(text, cls) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + cls;
}

function setConnected(on) {
  $("connect").disabled = on;
  $("disconnect").disabled = !on;
  $("subscribe").disabled = !on;
  $("unsubscribe").disabled = !on;
}

function log(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  for (const [cls, value] of [["time", new Date().toTimeString().slice(0, 8)],
                              ["kind", kind], ["text", text]]) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = value;
    li.appendChild(span);
  }
  const list = $("log");
  list.appendChild(li);
  while (list.children.length > MAX_LOG) list.removeChild(list.firstChild);
  // Follow the tail only when the operator is already at the bottom.
  const nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
  if (nearBottom) li.scrollIntoView({ block: "end" });
}

function showReply(reply) {
  for (const refusal of reply.refused) log("error", refusal);
  log("reply", JSON.stringify({ groups_current: reply.current, groups_joined: reply.joined,
                                groups_left: reply.left, recovery: reply.recovery }));
  $("groups-current").textContent = reply.current.length ? reply.current.join(" ") : "(none)";
  if (client && client.user !== null) $("user").textContent = String(client.user);
}

function onState({ state, code, reason, delay }) {
  if (state === "connecting") {
    setStatus("connecting", "closed");
  } else if (state === "open") {
    setStatus("open", "open");
    log("open", defaultUrl());
  } else if (state === "waiting") {
    // The browser hides why a handshake failed (a 403 looks like 1006).
    const why = "code " + code + (reason ? ": " + reason : "");
    setStatus("reconnecting (" + why + ")", "error");
    log("close", why + "; again in " + (delay / 1000).toFixed(1) + " s");
    $("groups-current").textContent = "-";
  }
}

function onStopped({ code, reason, why }) {
  const text = "closed " + code + (why !== "closed" ? " (" + why + ")" : "");
  setStatus(text, code === 1000 ? "closed" : "error");
  log("close", "code " + code + (reason ? ": " + reason : "") + ", stopped: " + why);
  setConnected(false);
  $("groups-current").textContent = "-";
  client = null;
}

function readGroups() {
  let groups;
  try {
    groups = JSON.parse($("groups").value);
  } catch (e) {
    log("error", "groups: not JSON: " + e.message);
    return null;
  }
  if (!groups || typeof groups !== "object" || Array.isArray(groups)) {
    log("error", "groups: expected an object like {\"jobs\": [\"status_changed\"]}");
    return null;
  }
  return groups;
}

function subscribe(groups) {
  if (!client || groups === null) return;
  log("request", "subscribe " + JSON.stringify(groups));
  // The reply is shown by the "subscribed" listener, which also sees the
  // SDK's own resubscription after a reconnect.
  client.subscribe(groups).catch((e) => log("error", e.message));
}

// Connect = connect and subscribe to the groups field: the SDK re-sends the
// latest set after every reconnect, so the set is part of the connection.
function connect() {
  if (client) return;
  const groups = readGroups();
  if (groups !== null) start(groups);
}

// One WsgwClient; its listeners act only while it is the console's client.
// The SDK offers wsgw.2 and wsgw.1: a gateway with its history off answers
// wsgw.1 (the old protocol), so the console works against either.
function start(groups) {
  const token = $("token").value.trim();
  // A static token: an expired one stops the console or is retried, which
  // the operator sees, rather than the console minting anything.
  const c = new WsgwClient(defaultUrl(), token ? { token } : {});
  const mine = (fn) => (arg) => { if (c === client) fn(arg); };
  c.on("state", mine(onState));
  c.on("stopped", mine(onStopped));
  c.on("subscribed", mine(showReply));
  c.on("event", mine((ev) => {
    eventCount++;
    $("event-count").textContent = String(eventCount);
    log("event", ev.text);
  }));
  c.on("gap", mine(({ group, status }) => log("gap", group + ": " + status + " (events missed)")));
  c.on("refreshed", mine(({ expires }) => log("refreshed", "token valid until " + expires)));
  c.on("message", mine((msg) => log("message", typeof msg === "string" ? msg : JSON.stringify(msg))));
  client = c;
  setConnected(true);
  subscribe(groups);
}

function init() {
  $("ws-url").textContent = defaultUrl();
  const urlToken = params.get("token");
  if (urlToken) {
    $("token").value = urlToken;
    // Out of the address bar and the history (the page sends no
    // Referer either: <meta name="referrer">).
    params.delete("token");
    const rest = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
  }
  if (params.get("groups")) $("groups").value = params.get("groups");
  $("xrf").textContent = hasCookie("csrftoken") ? "yes" : "no";
  $("connect-form").addEventListener("submit", (e) => { e.preventDefault(); connect(); });
  $("disconnect").addEventListener("click", () => { if (client) client.close(); });
  $("subscribe-form").addEventListener("submit", (e) => { e.preventDefault(); subscribe(readGroups()); });
  $("unsubscribe").addEventListener("click", () => subscribe({}));
  $("clear").addEventListener("click", () => {
    $("log").textContent = "";
    eventCount = 0;
    $("event-count").textContent = "0";
  });
  // Auto-connect only with the site's own cookie: a link carrying a
  // token (perhaps someone else's) waits for the operator's click.
  if (params.get("connect") === "1" && !urlToken) connect();
}

init();
