// usage.ts - compiled by `tsc --noEmit -p test/types`: every declaration of
// src/wsgw.d.ts in use, and misuses that must not compile (@ts-expect-error).
//
// Owns: the declarations check. Must not: run (it is only type-checked).

import {
  WsgwClient, WsgwError, backoffDelay, classify, closePolicy, groupNames, jwtExp,
  type SubscribeResult, type WsgwEvent,
} from "wsgw-client";

const client = new WsgwClient("wss://host/websocket/", {
  token: async () => "jwt",
  xrftoken: () => null,
  WebSocket: globalThis.WebSocket, // the browser's (lib DOM) fits WebSocketConstructor
  protocol: "wsgw.2",
  backoff: { initial: 250, max: 30000, factor: 2 },
  heartbeatTimeout: 65000,
  refreshMargin: 60000,
});
new WsgwClient("ws://h/websocket/", { token: "static", protocol: null });
new WsgwClient("ws://h/websocket/");
// A Node WebSocket stand-in with the shape of `ws`'s.
class NodeLikeWebSocket {
  protocol = "";
  onopen: ((ev: any) => void) | null = null;
  onmessage: ((ev: { data: any }) => void) | null = null;
  onerror: ((ev: any) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  constructor(readonly url: string, readonly protocols?: string | string[]) {}
  send(data: string): void { void data; }
  close(code?: number, reason?: string): void { void code; void reason; }
  terminate(): void {}
}
new WsgwClient("ws://h/websocket/", { WebSocket: NodeLikeWebSocket });

async function main(): Promise<void> {
  client.connect().connect();
  const reply: SubscribeResult = await client.subscribe({ jobs: ["status_changed"], job_events: [42], control: true });
  const groups: string[] = [...reply.current, ...reply.joined, ...reply.left, ...reply.refused];
  const status: "ok" | "expired" | "unknown" | undefined = reply.recovery["jobs-status_changed"];
  const pos: string | undefined = reply.positions["jobs-status_changed"];
  console.log(groups, status, pos);
  const off: () => void = client.onGroup("job_events-42", (ev: WsgwEvent) => {
    const g: string | null = ev.group;
    const t: string = ev.text;
    console.log(g, t, ev.position, ev.data);
  });
  off();
  client.on("event", (ev) => ev.text.length);
  client.on("gap", ({ group, status }) => `${group}${status}`);
  client.on("state", ({ state, code, reason, delay }) => [state, code, reason, delay]);
  client.on("stopped", ({ code, reason, why }) => {
    const w: "kicked" | "auth" | "protocol" | "closed" = why;
    return [code, reason, w];
  });
  client.on("refreshed", ({ expires }) => expires + 1);
  client.on("message", (m) => m);
  client.on("subscribed", (r) => r.current);
  const h = (ev: WsgwEvent): void => void ev;
  client.on("event", h).off("event", h);
  const s: "idle" | "connecting" | "open" | "waiting" | "stopped" = client.state;
  const p: "wsgw.2" | "" = client.protocol;
  console.log(s, p, client.user, client.positions["g"]);
  client.close();
  try {
    await client.subscribe({});
  } catch (e) {
    if (e instanceof WsgwError && (e.code === "request" || e.code === "stopped" || e.code === "busy")) {
      console.log(e.message);
    }
  }
  const d: number = backoffDelay(3, { initial: 1, max: 2, factor: 3 }, Math.random);
  const x: number | null = jwtExp("a.b.c");
  const names: string[] = groupNames({ jobs: ["a"] });
  const kind = classify({}, { v2: true, greeted: true, inFlight: null });
  const policy = closePolicy(4403);
  console.log(d, x, names, kind, policy);
}

// Misuses the declarations must refuse:
// @ts-expect-error an unknown event name
client.on("nope", () => 0);
// @ts-expect-error a token is a string or a function
new WsgwClient("ws://h/", { token: 42 });
// @ts-expect-error protocol is "wsgw.2" or null
new WsgwClient("ws://h/", { protocol: "wsgw.3" });
// @ts-expect-error groups values are lists or scalars, not objects
void client.subscribe({ jobs: { a: 1 } });
// @ts-expect-error state is read-only
client.state = "open";
client.on("gap", (g) => {
  // @ts-expect-error a gap's status is never "ok"
  const ok: "ok" = g.status;
  return ok;
});

void main;
