// wsgw.d.ts - hand-written declarations of wsgw.js (the SDK's public API).
//
// Owns: the types callers compile against. Must not: drift from wsgw.js
// (test/types/usage.ts exercises every name here under tsc --noEmit).

/** A token, or where to get a fresh one (called at connect when none is held,
 * after a 4401 or a refused handshake, and before the token's exp). */
export type TokenSource = string | (() => string | Promise<string>);

/** The subscription request's `groups`: `key: [values]` is the groups
 * key-value; a non-list value names the group `key`. */
export type Groups = Record<string, ReadonlyArray<string | number> | string | number | boolean | null>;

export type RecoveryStatus = "ok" | "expired" | "unknown";

export type State = "idle" | "connecting" | "open" | "waiting" | "stopped";

export type StopReason = "kicked" | "auth" | "protocol" | "closed";

/** The minimal WebSocket the SDK needs (the browser's, or the `ws` package's).
 * The SDK sets the four handlers; event arguments are read duck-typed
 * (data, code, reason, and ws's error message). */
export interface WebSocketLike {
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface BackoffOptions {
  /** ms; default 250 */
  initial?: number;
  /** ms; default 30000 */
  max?: number;
  /** default 2 */
  factor?: number;
}

export interface WsgwClientOptions {
  /** Absent: no token in the URL (the browser's cookies authenticate). */
  token?: TokenSource | null;
  /** Sent in every subscribe. Default in browsers: the `csrftoken` cookie, else null. */
  xrftoken?: string | (() => string | null) | null;
  /** Default: globalThis.WebSocket. In Node < 22 pass the `ws` package's default export. */
  WebSocket?: WebSocketConstructor;
  /** "wsgw.2" (the default: offered, with "wsgw.1", the old protocol, as the fallback) or null (offer nothing: the old protocol only). */
  protocol?: "wsgw.2" | null;
  backoff?: BackoffOptions;
  /** ms of silence before the first heartbeat that mean a dead connection (default 65000). */
  heartbeatTimeout?: number;
  /** Refresh a JWT this many ms before its exp (default 60000; at most half its remaining life). */
  refreshMargin?: number;
  /** Where a listener's exception goes (default: reportError, else rethrown asynchronously). */
  onListenerError?: (error: unknown) => void;
  /** For tests: the timers and clock the client uses. */
  clock?: {
    setTimeout?: (fn: () => void, ms: number) => unknown;
    clearTimeout?: (id: any) => void;
    now?: () => number;
  };
  /** For tests: the jitter source, [0, 1). */
  random?: () => number;
}

export interface SubscribeResult {
  current: string[];
  joined: string[];
  left: string[];
  /** The gateway's "access denied to channel ..." texts for entries it skipped. */
  refused: string[];
  /** wsgw.2 with positions sent (after a reconnect); {} otherwise. */
  recovery: Record<string, RecoveryStatus>;
  /** wsgw.2: where each current group is served from; {} on the old protocol. */
  positions: Record<string, string>;
}

export interface WsgwEvent {
  /** null on the old protocol */
  group: string | null;
  /** null on the old protocol */
  position: string | null;
  /** The emitted text, exactly. */
  text: string;
  /** JSON.parse(text), or undefined when it is not JSON. */
  data: unknown;
}

export interface StateChange {
  state: State;
  code?: number;
  reason?: string;
  /** "waiting": ms until the next attempt */
  delay?: number;
}

export interface EventMap {
  event: WsgwEvent;
  gap: { group: string; status: "expired" | "unknown" };
  state: StateChange;
  stopped: { code: number; reason: string; why: StopReason };
  refreshed: { expires: number };
  /** Any other server message (e.g. a re-check's "access denied ..."), parsed when JSON. */
  message: unknown;
  /** Every subscription reply, the re-subscription after a reconnect included. */
  subscribed: SubscribeResult;
}

export type WsgwErrorCode = "request" | "stopped" | "busy";

export class WsgwError extends Error {
  constructor(code: WsgwErrorCode, message: string);
  readonly code: WsgwErrorCode;
}

export class WsgwClient {
  constructor(url: string, options?: WsgwClientOptions);
  /** Idempotent; also done by the first subscribe(). */
  connect(): this;
  /** Replaces the desired set; resolves with the reply that covered this call. */
  subscribe(groups: Groups): Promise<SubscribeResult>;
  /** Returns a function that removes the listener. */
  onGroup(group: string, fn: (ev: WsgwEvent) => void): () => void;
  on<K extends keyof EventMap>(name: K, fn: (arg: EventMap[K]) => void): this;
  off<K extends keyof EventMap>(name: K, fn: (arg: EventMap[K]) => void): this;
  /** Stops for good (state "stopped", why "closed"). */
  close(): void;
  readonly state: State;
  readonly user: number | string | null;
  /** "wsgw.2" or "" */
  readonly protocol: "wsgw.2" | "";
  /** A copy: group -> position of the last event (or reply/notice). */
  readonly positions: Record<string, string>;
}

export function backoffDelay(attempt: number, backoff: Required<BackoffOptions>, random?: () => number): number;
export function jwtExp(token: unknown): number | null;
export function groupNames(groups: Groups): string[];
export function classify(
  msg: unknown,
  ctx: { v2: boolean; greeted: boolean; inFlight: "subscribe" | "refresh" | null },
): "greeting" | "heartbeat" | "reply" | "notice" | "refresh" | "refusal" | "error" | "event" | "message";
export function closePolicy(code: number, status?: number): "kicked" | "protocol" | "auth" | "retry";
