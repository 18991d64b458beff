/*
 * app.js - behaviour of the wsgw event console (deploy/demo/index.html).
 *
 * Owns: one websocket to the gateway, the subscription requests (AWX's
 * shape: {"groups": {...}, "xrftoken": csrftoken cookie}), and the log of
 * what arrives. The websocket goes to /websocket/ on the page's own origin
 * and nowhere else (the CSP says connect-src 'self' too): the xrftoken is
 * the csrftoken cookie's value and must not be sent to another server. A
 * token in the URL fills the field and is removed from the address bar; it
 * never connects by itself (connect=1 only acts without one). Received text is shown with textContent only: events come
 * from backends and must never be interpreted as markup.
 */
(function () {
  "use strict";

  var MAX_LOG = 1000; // entries kept: a busy job must not eat the tab's memory

  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(window.location.search);
  var ws = null;
  var pendingReplies = 0; // subscription requests sent, reply not yet seen
  var greeted = false;     // the accept message arrived
  var eventCount = 0;
  var autoConnect = false; // connect=1 and no token in the URL

  function defaultUrl() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + "/websocket/";
  }

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var kv = parts[i].trim();
      var eq = kv.indexOf("=");
      if (eq > 0 && kv.slice(0, eq) === name) return decodeURIComponent(kv.slice(eq + 1));
    }
    return null;
  }

  function setStatus(text, cls) {
    var s = $("status");
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
    var li = document.createElement("li");
    li.className = kind;
    var t = document.createElement("span");
    t.className = "time";
    t.textContent = new Date().toTimeString().slice(0, 8);
    var k = document.createElement("span");
    k.className = "kind";
    k.textContent = kind;
    var x = document.createElement("span");
    x.className = "text";
    x.textContent = text;
    li.appendChild(t);
    li.appendChild(k);
    li.appendChild(x);
    var list = $("log");
    list.appendChild(li);
    while (list.children.length > MAX_LOG) list.removeChild(list.firstChild);
    // Follow the tail only when the operator is already at the bottom.
    var nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
    if (nearBottom) li.scrollIntoView({block: "end"});
  }

  // What a received text is: the greeting, a reply to our request, an
  // error about it, or an event (anything else, shown as sent).
  function classify(text) {
    var msg = null;
    try { msg = JSON.parse(text); } catch (e) { return "event"; }
    if (!greeted && msg && msg.accept === true) return "accept";
    if (pendingReplies > 0 && msg && typeof msg === "object") {
      if (Array.isArray(msg.groups_current)) return "reply";
      if (Object.keys(msg).length === 1 && typeof msg.error === "string") return "error";
    }
    return "event";
  }

  function onMessage(ev) {
    if (typeof ev.data !== "string") {
      log("binary", "(" + (ev.data.size || ev.data.byteLength || 0) + " bytes)");
      return;
    }
    var kind = classify(ev.data);
    if (kind === "accept") {
      greeted = true;
      $("user").textContent = String(JSON.parse(ev.data).user);
    } else if (kind === "reply") {
      pendingReplies--;
      var current = JSON.parse(ev.data).groups_current;
      $("groups-current").textContent = current.length ? current.join(" ") : "(none)";
    } else if (kind === "error") {
      // A refused entry comes before its request's reply; a whole-request
      // error is the only answer to it.
      var err = JSON.parse(ev.data).error;
      if (!/^access denied/.test(err)) pendingReplies--;
    } else {
      eventCount++;
      $("event-count").textContent = String(eventCount);
    }
    log(kind, ev.data);
  }

  function connect() {
    if (ws) return;
    var url = defaultUrl();
    var token = $("token").value.trim();
    if (token) url += (url.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(token);
    greeted = false;
    pendingReplies = 0;
    setStatus("connecting", "closed");
    try {
      ws = new WebSocket(url);
    } catch (e) {
      setStatus("bad URL", "error");
      log("error", String(e));
      ws = null;
      return;
    }
    ws.onopen = function () {
      setStatus("open", "open");
      setConnected(true);
      log("open", url.replace(/token=[^&]*/, "token=…"));
      if (autoConnect) subscribe();
    };
    ws.onmessage = onMessage;
    ws.onerror = function () {
      // The browser hides the reason (a 403 looks like any failure).
      log("error", "websocket error (refused token, gateway down, or network)");
    };
    ws.onclose = function (ev) {
      setStatus("closed " + ev.code + (ev.reason ? " " + ev.reason : ""), ev.code === 1000 ? "closed" : "error");
      log("close", "code " + ev.code + (ev.reason ? ": " + ev.reason : ""));
      setConnected(false);
      ws = null;
      $("groups-current").textContent = "-";
    };
  }

  function send(groups) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    var req = {groups: groups};
    var csrf = cookie("csrftoken");
    if (csrf !== null) req.xrftoken = csrf; // the gateway checks it against the cookie
    pendingReplies++;
    var text = JSON.stringify(req);
    log("sent", text);
    ws.send(text);
  }

  function subscribe() {
    var groups;
    try {
      groups = JSON.parse($("groups").value);
    } catch (e) {
      log("error", "groups: not JSON: " + e.message);
      return;
    }
    if (!groups || typeof groups !== "object" || Array.isArray(groups)) {
      log("error", "groups: expected an object like {\"jobs\": [\"status_changed\"]}");
      return;
    }
    send(groups);
  }

  function init() {
    $("ws-url").textContent = defaultUrl();
    var urlToken = params.get("token");
    if (urlToken) {
      $("token").value = urlToken;
      // Out of the address bar and the history (the page sends no
      // Referer either: <meta name="referrer">).
      params.delete("token");
      var rest = params.toString();
      window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
    }
    if (params.get("groups")) $("groups").value = params.get("groups");
    $("xrf").textContent = cookie("csrftoken") !== null ? "yes" : "no";
    $("connect-form").addEventListener("submit", function (e) { e.preventDefault(); connect(); });
    $("disconnect").addEventListener("click", function () { if (ws) ws.close(1000); });
    $("subscribe-form").addEventListener("submit", function (e) { e.preventDefault(); subscribe(); });
    $("unsubscribe").addEventListener("click", function () { send({}); });
    $("clear").addEventListener("click", function () {
      $("log").textContent = "";
      eventCount = 0;
      $("event-count").textContent = "0";
    });
    // Auto-connect only with the site's own cookie: a link carrying a
    // token (perhaps someone else's) waits for the operator's click.
    autoConnect = params.get("connect") === "1" && !urlToken;
    if (autoConnect) connect();
  }

  init();
})();
