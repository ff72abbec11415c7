// sanic-chat JavaScript client: one ES module, no dependencies.
//
// Works in browsers and in Node (the global WebSocket: Node 22+, or Node
// 20 with --experimental-websocket; or pass options.WebSocket). It keeps
// the guarantees of the Python client (docs/clients.md): reconnect with
// jittered exponential backoff, re-join every room with `since`, deliver
// each message once and in order, resend unacknowledged sends with the
// same `ref` (the server publishes a ref once), refresh the token before
// it expires. The wire protocol is docs/protocol.md.

const SUBPROTOCOL = "sanic-chat";
const WINDOW = 4096; // delivered ids remembered per room (>= CHAT_HISTORY_SIZE)
const ROOM_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const DEFAULTS = {
  reconnect: { initialDelay: 500, maxDelay: 30000, factor: 2, jitter: 0.5 },
  maxPending: 100,
  maxPendingBytes: 262144,
  sendTimeout: 30000,
  heartbeat: 30000,
};
const encoder = new TextEncoder();

/** An error frame, or the client's own failure ("queue_full", "timeout",
 * "unauthorized", "refused", "closed"); `code` is what to code against,
 * `ref` names the request that failed (resend a send with it). */
export class ChatError extends Error {
  constructor(code, message, frame, ref) {
    super(message);
    this.name = "ChatError";
    this.code = code;
    if (frame !== undefined) this.frame = frame;
    if (ref !== undefined) this.ref = ref;
  }
}

/** Connect to the chat at `url` ("ws://host/ws", or "/ws" in a page). */
export function connect(url, options = {}) {
  return new ChatClient(url, options);
}

/** Jittered exponential delays: spread reconnects of many clients. */
class Backoff {
  constructor({ initialDelay, maxDelay, factor, jitter }) {
    Object.assign(this, { initialDelay, maxDelay, factor, jitter });
    this.attempt = 0;
  }
  next() {
    const base = Math.min(
      this.maxDelay,
      this.initialDelay * this.factor ** this.attempt++,
    );
    return base * (1 - this.jitter * Math.random());
  }
  reset() {
    this.attempt = 0;
  }
}

/** The `exp` of a JWT in ms, or null: read, never verified (the server
 * does that); only used to refresh in time. */
function tokenExpiry(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "=")))
      .exp;
    return typeof exp === "number" ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/** What the client remembers of one room across sockets: the last id
 * seen (the next `since`), the ids already delivered (a replay may
 * overlap live frames), and the live member list. */
class Room {
  constructor(name) {
    this.name = name;
    this.last = null;
    this.seen = new Set();
    this.members = new Map();
    this.catchUp = null; // live messages held while a history catch-up runs
    this.gap = false; // lagged: live messages dropped until the re-join's replay
  }
  /** True the first time `key` is seen; remembers the last WINDOW keys. */
  fresh(key) {
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    if (this.seen.size > WINDOW) this.seen.delete(this.seen.values().next().value);
    return true;
  }
}

/** Sends and other requests waiting for their answer, bounded in count
 * and bytes. Each keeps its `ref` for life, so a resend after a lost ack
 * is recognised by the server and not published twice. */
class Requests {
  constructor(maxCount, maxBytes) {
    this.maxCount = maxCount;
    this.maxBytes = maxBytes;
    this.bytes = 0;
    this.byRef = new Map();
    this.prefix = `js-${Math.random().toString(36).slice(2, 10)}${Date.now().toString(36)}-`;
    this.counter = 0;
  }
  /** A fresh ref: unique per client (a random prefix), then a counter. */
  next(tag = "") {
    return `${this.prefix}${tag}${this.counter++}`;
  }
  add(frame, answer) {
    if (this.byRef.has(frame.ref)) {
      return Promise.reject(new TypeError(`a request with ref ${frame.ref} is waiting`));
    }
    const bytes = encoder.encode(JSON.stringify(frame)).length;
    if (this.byRef.size >= this.maxCount || this.bytes + bytes > this.maxBytes) {
      return Promise.reject(
        new ChatError("queue_full", `too many requests waiting (${this.byRef.size}, ${this.bytes} bytes)`),
      );
    }
    frame.ref ??= this.next();
    this.bytes += bytes;
    return new Promise((resolve, reject) => {
      this.byRef.set(frame.ref, { frame, answer, bytes, resolve, reject });
    });
  }
  get(ref) {
    return this.byRef.get(ref);
  }
  settle(ref, error, value) {
    const request = this.byRef.get(ref);
    if (!request) return false;
    this.byRef.delete(ref);
    this.bytes -= request.bytes;
    clearTimeout(request.timer);
    if (error) request.reject(new ChatError(error.code, error.message, error.frame, ref));
    else request.resolve(value);
    return true;
  }
  failAll(error) {
    for (const ref of [...this.byRef.keys()]) this.settle(ref, error);
  }
  /** Sends (messages, DMs) not acknowledged yet. */
  get sends() {
    let count = 0;
    for (const request of this.byRef.values()) count += request.frame.type === "message";
    return count;
  }
}

/** A chat connection that survives network failures; see connect(). */
export class ChatClient {
  constructor(url, options = {}) {
    for (const room of options.rooms ?? []) {
      if (!ROOM_RE.test(room)) throw new TypeError(`invalid room name: ${room}`);
    }
    this._url = url;
    this._options = options;
    this._token = options.token ?? null;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("no WebSocket: pass options.WebSocket (Node 20: --experimental-websocket)");
    }
    this._backoff = new Backoff({ ...DEFAULTS.reconnect, ...options.reconnect });
    this._timeout = options.sendTimeout ?? DEFAULTS.sendTimeout;
    this._requests = new Requests(
      options.maxPending ?? DEFAULTS.maxPending,
      options.maxPendingBytes ?? DEFAULTS.maxPendingBytes,
    );
    this._rooms = new Map((options.rooms ?? []).map((r) => [r, new Room(r)]));
    this._listeners = new Map();
    this._state = "connecting";
    this._ws = null;
    this._online = false; // welcome read on the current socket
    this._joining = new Set();
    this._own = new Map(); // ref -> the client's own request (catch-up, presence)
    this._asked = new Map(); // room -> true (catch-up) / false (newest id)
    this._authRetried = false;
    this._refusals = 0;
    this._timers = new Set();
    this._epoch = 0; // one per socket ended
    this.user = null;
    this.inbox = null;
    this.ready = new Promise((resolve, reject) => {
      this._ready = { resolve, reject };
    });
    this.ready.catch(() => {}); // an unread rejection is not an error
    this._watchNetwork();
    this._open();
  }

  get state() {
    return this._state;
  }
  /** Sends (messages, DMs) not acknowledged yet. */
  get pending() {
    return this._requests.sends;
  }

  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }
  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  /** Resolves with the id; `options.ref` resends a failed send safely. */
  send(room, text, options = {}) {
    return this._send({ type: "message", room, text }, options);
  }
  sendTo(userId, text, options = {}) {
    return this._send({ type: "message", to: userId, text }, options);
  }
  edit(room, id, text) {
    return this._request({ type: "edit", room, id, text }, "ack").then(() => {});
  }
  delete(room, id) {
    return this._request({ type: "delete", room, id }, "ack").then(() => {});
  }
  /** Join `room` now and on every reconnect; resolves on `joined`. */
  join(room) {
    if (!ROOM_RE.test(room)) return Promise.reject(new TypeError(`invalid room name: ${room}`));
    const added = !this._rooms.has(room);
    if (added) this._rooms.set(room, new Room(room));
    return this._request(this._joinFrame(room), "joined").then(
      () => {},
      (error) => {
        if (added) this._rooms.delete(room); // refused: not re-joined either
        throw error;
      },
    );
  }
  /** Leave `room`; it is not re-joined on reconnects. */
  leave(room) {
    this._rooms.delete(room);
    return this._request({ type: "leave", room }, "left").then(() => {});
  }
  /** Stored messages of `room`, oldest first (edits folded in). */
  history(room, options = {}) {
    const frame = { type: "history", room };
    if (options.limit !== undefined) frame.limit = options.limit;
    if (options.before !== undefined) frame.before = options.before;
    return this._request(frame, "history").then((answer) => answer.messages);
  }
  receipts(room) {
    return this._request({ type: "receipts", room }, "receipts").then((answer) => answer.read);
  }
  members(room) {
    return [...(this._rooms.get(room)?.members.values() ?? [])];
  }
  /** Best-effort: dropped while offline (it is stale by the reconnect). */
  typing(room) {
    this._write({ type: "typing", room });
  }
  typingTo(userId) {
    this._write({ type: "typing", to: userId });
  }
  /** Move your read mark; resolves on the server's ack. Offline, only
   * the newest per room waits (an older one resolves as superseded). */
  markRead(room, id) {
    for (const request of this._requests.byRef.values()) {
      const frame = request.frame;
      if (frame.type === "read" && frame.room === room) {
        this._requests.settle(frame.ref, null);
      }
    }
    return this._request({ type: "read", room, id }, "ack").then(() => {});
  }

  /** Connect now if waiting to reconnect (skips the backoff delay). */
  reconnect() {
    if (this._state !== "disconnected" || this._ws) return;
    this._clearTimers();
    this._epoch += 1;
    this._open();
  }

  /** Close the socket and stop; waiting requests reject with "closed". */
  close() {
    this._finish("closed", new ChatError("closed", "the client was closed"));
  }

  // --- requests -----------------------------------------------------------

  _send(frame, options) {
    if (options.meta !== undefined) frame.meta = options.meta;
    if (options.ref !== undefined) {
      if (typeof options.ref !== "string" || !options.ref || options.ref.length > 128) {
        return Promise.reject(new TypeError("ref: a non-empty string of at most 128 characters"));
      }
      frame.ref = options.ref;
    }
    return this._request(frame, "ack");
  }

  /** Every request has a ref, and every answer echoes it: a request
   * refused unread (`rate_limited`) or lost cannot shift the answers of
   * later ones; it rejects with "timeout" after `sendTimeout`. */
  _request(frame, answer) {
    if (isFinal(this._state)) {
      return Promise.reject(new ChatError(this._state, `the client is ${this._state}`));
    }
    const promise = this._requests.add(frame, answer);
    const request = this._requests.get(frame.ref);
    if (request?.frame === frame) {
      request.timer = setTimeout(() => {
        const message = `no answer to ${frame.type} ${frame.ref} in ${this._timeout} ms`;
        this._requests.settle(frame.ref, new ChatError("timeout", message));
      }, this._timeout);
      if (this._online) this._write(request.frame);
    }
    return promise;
  }

  /** A request of the client's own (a catch-up, a member list): its
   * answer and error are not the application's. Unanswered in time
   * (refused unread), a catch-up is asked again. */
  _internal(frame) {
    frame.ref = this._requests.next("i");
    const timer = this._later(() => {
      this._own.delete(frame.ref);
      const room = this._rooms.get(frame.room);
      if (frame.type === "join" && room?.gap) return this._rejoin(room);
      if (frame.type !== "history" || !this._asked.has(frame.room)) return;
      const catchUp = this._asked.get(frame.room);
      this._asked.delete(frame.room);
      this._check(frame.room, catchUp);
    }, this._timeout);
    this._own.set(frame.ref, { frame, timer });
    this._write(frame);
  }

  /** The client's own request answered by `frame`, if it is one. */
  _ownAnswer(frame) {
    const own = typeof frame.ref === "string" && this._own.get(frame.ref);
    if (!own) return null;
    this._own.delete(frame.ref);
    clearTimeout(own.timer);
    this._timers.delete(own.timer);
    return own.frame;
  }

  _write(frame) {
    if (this._online && this._ws?.readyState === 1) this._ws.send(JSON.stringify(frame));
  }

  _joinFrame(room) {
    const since = this._rooms.get(room)?.last;
    return since ? { type: "join", room, since } : { type: "join", room };
  }

  // --- connection -----------------------------------------------------------

  async _open() {
    if (isFinal(this._state)) return;
    if (this._offline()) return this._setState("disconnected", { code: 1006, reason: "offline" });
    this._setState("connecting");
    if (this._options.getToken) {
      const token = await this._askToken();
      if (token) this._token = token;
      if (isFinal(this._state) || this._state === "disconnected") return; // went offline
    }
    const protocols = [SUBPROTOCOL];
    if (this._token) protocols.push(`bearer.${this._token}`);
    let ws;
    try {
      ws = new this._WebSocket(this._connectUrl(), protocols);
    } catch (error) {
      this._finish("refused", new ChatError("refused", `cannot connect: ${error.message}`));
      return;
    }
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (event) => {
      if (this._ws !== ws || typeof event.data !== "string") return;
      this._heard = true;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame === "object") this._receive(frame);
    };
    ws.onclose = (event) => {
      if (this._ws !== ws) return;
      this._closed(opened, event.code, event.reason);
    };
    // A failed upgrade: some WebSockets (Node 20's) fire only "error".
    ws.onerror = () => {
      if (this._ws === ws && !opened) this._closed(false, 1006, "");
    };
    // A connect that hangs (no answer, or no welcome): give up on it.
    this._later(() => {
      if (this._ws !== ws || this._online) return;
      this._ws = null;
      ws.close();
      this._closed(true, 1006, "no welcome in time");
    }, this._options.heartbeat || DEFAULTS.heartbeat);
  }

  /** The URL of the next connect: each room with `@last id` (recovery). */
  _connectUrl() {
    const base = globalThis.location?.href;
    const url = new URL(this._url, base);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    url.searchParams.delete("room");
    for (const room of this._rooms.values()) {
      if (room.name.startsWith("@")) continue; // the inbox: joined by the server
      url.searchParams.append("room", room.last ? `${room.name}@${room.last}` : room.name);
    }
    if (this._options.name !== undefined) url.searchParams.set("name", this._options.name);
    return url.href;
  }

  /** Forget what belonged to the socket that ended. */
  _detach() {
    this._epoch += 1; // a _closed() still deciding is overtaken
    this._ws = null;
    this._online = false;
    this._own.clear();
    this._asked.clear();
    for (const room of this._rooms.values()) Object.assign(room, { catchUp: null, gap: false });
    this._clearTimers();
  }

  /** In a browser, follow the network as centrifuge-js does: offline,
   * drop the socket at once (it may linger, or keep working in
   * Chromium's offline mode); online, reconnect without the backoff. */
  _watchNetwork() {
    const browser = typeof globalThis.navigator?.onLine === "boolean";
    if (typeof globalThis.addEventListener !== "function" || !browser) return;
    const offline = () => {
      const ws = this._ws;
      if (isFinal(this._state) || (!ws && this._state === "disconnected")) return;
      this._detach();
      if (ws) {
        ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
        if (ws.readyState <= 1) ws.close(1000, "offline");
      }
      const previous = this._state;
      this._state = "disconnected";
      this._emit("state", { state: "disconnected", previous, code: 1006, reason: "offline" });
    };
    const online = () => this.reconnect();
    globalThis.addEventListener("offline", offline);
    globalThis.addEventListener("online", online);
    this._unwatch = () => {
      globalThis.removeEventListener("offline", offline);
      globalThis.removeEventListener("online", online);
    };
  }

  /** The browser says there is no network: wait for "online". */
  _offline() {
    return globalThis.navigator?.onLine === false;
  }

  /** Decide what a closed socket means: stop, or reconnect after a delay
   * (offline: once the network is back). */
  async _closed(opened, code, reason) {
    this._detach();
    if (isFinal(this._state)) return;
    const previous = this._state;
    const epoch = this._epoch;
    const refused = !opened && (await this._reachable());
    if (isFinal(this._state) || epoch !== this._epoch) return; // offline, or reconnect()
    const expiry = this._token ? tokenExpiry(this._token) : null;
    if (code === 1008 || (refused && expiry !== null && expiry < Date.now())) {
      this._retryAuth(previous, code, reason);
      return;
    } else if (refused) {
      this._refusals += 1;
      if (this._token && this._refusals >= 2) {
        this._retryAuth(previous, code, reason);
        return;
      }
      if (!this._token && this._refusals >= 5) {
        this._finish("refused", new ChatError("refused", "the server refused the connection"), code);
        return;
      }
    }
    if (isFinal(this._state)) return;
    this._state = "disconnected";
    this._emit("state", { state: "disconnected", previous, code, reason });
    if (!this._offline()) this._later(() => this._open(), this._backoff.next());
  }

  /** A refused identity: ask getToken once for a fresh one and retry at
   * once; the second time, stop with "unauthorized". */
  _retryAuth(previous, code, reason) {
    if (this._options.getToken && !this._authRetried) {
      this._authRetried = true;
      this._refusals = 0;
      this._state = "disconnected";
      this._emit("state", { state: "disconnected", previous, code, reason });
      this._later(() => this._open(), 0);
      return;
    }
    this._finish("unauthorized", new ChatError("unauthorized", reason || "the server refused the credentials"), code);
  }

  /** Whether the server answers HTTP: a socket closed before open by a
   * reachable server was refused at the upgrade (401, 403, 400, 429,
   * 503: browsers and Node do not say which); else the network failed. */
  async _reachable() {
    try {
      const url = new URL(this._connectUrl());
      url.protocol = url.protocol === "wss:" ? "https:" : "http:";
      url.search = "";
      const init = { signal: AbortSignal.timeout(5000) };
      if (globalThis.document) Object.assign(init, { mode: "no-cors", cache: "no-store" });
      const response = await fetch(url.href, init);
      await response.body?.cancel();
      return true;
    } catch {
      return false;
    }
  }

  _finish(state, error, code) {
    if (isFinal(this._state)) return;
    const previous = this._state;
    this._state = state;
    const ws = this._ws;
    this._detach();
    this._unwatch?.();
    if (ws && ws.readyState <= 1) ws.close(1000);
    this._requests.failAll(error);
    this._ready.reject(error);
    this._emit("state", { state, previous, code, reason: error.message });
  }

  _setState(state, extra = {}) {
    if (this._state === state) return;
    const previous = this._state;
    this._state = state;
    this._emit("state", { state, previous, ...extra });
  }

  _later(fn, ms) {
    const timer = setTimeout(() => {
      this._timers.delete(timer);
      fn();
    }, ms);
    this._timers.add(timer);
    return timer;
  }

  _clearTimers() {
    for (const timer of this._timers) clearTimeout(timer);
    this._timers.clear();
  }

  /** Browsers see no protocol-level pings: every `heartbeat` ms send a
   * `ping`; a socket that brought nothing for a whole period is taken as
   * dead (a half-open TCP connection can stay silent for minutes). */
  _heartbeat(ws) {
    const every = this._options.heartbeat ?? DEFAULTS.heartbeat;
    if (!every) return;
    this._heard = true;
    const beat = () => {
      if (this._ws !== ws) return;
      if (!this._heard) {
        this._ws = null; // its close event, if it ever comes, is stale
        ws.close();
        this._closed(true, 1006, "no answer to ping");
        return;
      }
      this._heard = false;
      this._write({ type: "ping" });
      this._later(beat, every);
    };
    this._later(beat, every);
  }

  /** Refresh the token before it expires: a minute before, or at 80% of
   * what is left for short tokens. Needs getToken and a JWT. */
  _scheduleRefresh() {
    const expiry = this._token && tokenExpiry(this._token);
    if (!this._options.getToken || !expiry) return;
    const left = expiry - Date.now();
    const delay = left > 300000 ? left - 60000 : left * 0.8;
    this._later(async () => {
      const token = await this._askToken();
      if (token && this._online) {
        this._pendingToken = token;
        this._write({ type: "refresh", token, ref: this._requests.next("r") });
      }
    }, Math.max(0, delay));
  }

  /** getToken's token, or null when it throws or has not answered
   * within a connect's time (`heartbeat`): a getToken that hangs must not
   * stall the client, which goes on with the token it has. */
  async _askToken() {
    const limit = this._options.heartbeat || DEFAULTS.heartbeat;
    let timer;
    const late = new Promise((_, reject) => {
      timer = this._later(() => reject(new Error(`no answer in ${limit} ms`)), limit);
    });
    try {
      return await Promise.race([Promise.resolve().then(() => this._options.getToken()), late]);
    } catch (error) {
      this._emit("error", new ChatError("token", `getToken failed: ${error}`));
      return null;
    } finally {
      clearTimeout(timer);
      this._timers.delete(timer);
    }
  }

  // --- frames ---------------------------------------------------------------

  /** One frame from the server. A frame of an unknown type is ignored; one
   * the client cannot read (a field missing or of the wrong type) is
   * reported as an `error` event ("bad_frame"), never thrown out of the
   * socket's handler (in Node, an uncaught exception ends the process). */
  _receive(frame) {
    if (!Object.hasOwn(HANDLERS, frame.type)) return;
    try {
      HANDLERS[frame.type].call(this, frame);
    } catch (error) {
      const message = `a ${frame.type} frame the client cannot read: ${error.message}`;
      this._emit("error", new ChatError("bad_frame", message));
    }
  }

  _welcome(frame) {
    this.user = frame.user ?? null;
    const inbox = typeof frame.inbox === "string" ? frame.inbox : null;
    if (this.inbox && inbox !== this.inbox) this._rooms.delete(this.inbox); // a guest is new each time
    this.inbox = inbox;
    this._online = true;
    this._heartbeat(this._ws);
    this._authRetried = false;
    this._refusals = 0;
    this._backoff.reset();
    this._joining = new Set(Array.isArray(frame.rooms) ? frame.rooms.filter((r) => typeof r === "string") : []);
    for (const room of this._joining) {
      if (!this._rooms.has(room)) this._rooms.set(room, new Room(room));
    }
    this._emit("welcome", { user: this.user, inbox, rooms: [...this._joining] });
    if (inbox) {
      if (!this._rooms.has(inbox)) this._rooms.set(inbox, new Room(inbox));
      if (this._rooms.get(inbox).last) this._internal(this._joinFrame(inbox));
      else this._check(inbox, false);
    }
    // After the re-joins (the URL's rooms, already joined by the server):
    // what was not acknowledged goes again, with its ref.
    for (const request of this._requests.byRef.values()) {
      if (request.answer === "joined" && this._joining.has(request.frame.room)) {
        continue; // joined by the connect's URL: settled by its `joined`
      }
      if (request.answer === "left" && !this._joining.has(request.frame.room)) {
        this._requests.settle(request.frame.ref, null, null); // not re-joined: left
        continue;
      }
      this._write(request.frame);
    }
    this._scheduleRefresh();
    this._connectedIfJoined();
  }

  _connectedIfJoined() {
    if (this._joining.size === 0 && this._online && this._state !== "connected") {
      this._setState("connected");
      this._ready.resolve();
    }
  }

  _joined(frame) {
    const room = this._rooms.get(frame.room);
    if (room && frame.user?.id === this.user?.id) {
      room.gap = false; // the replay (after since) follows, then live ones
      if (frame.ref === undefined) this._settleJoins(frame);
      else if (!this._ownAnswer(frame)) this._requests.settle(frame.ref, null, frame);
      if (frame.recovered === false) room.last = null;
      this._check(frame.room, frame.recovered === false || null);
      if (!frame.room.startsWith("@")) this._internal({ type: "presence", room: frame.room });
      this._joining.delete(frame.room);
      this._emit("joined", frame);
      this._connectedIfJoined();
      return;
    }
    if (room && frame.user) {
      room.members.set(frame.user.id, frame.user);
      this._emit("joined", frame);
      this._emitPresence(room);
    }
  }

  /** A `joined` without ref (a room of the connect's URL) answers the
   * join requests of that room that waited through the reconnect. */
  _settleJoins(frame) {
    for (const { frame: asked } of [...this._requests.byRef.values()]) {
      if (asked.type === "join" && asked.room === frame.room) this._requests.settle(asked.ref, null, frame);
    }
  }

  _left(frame) {
    const mine = frame.user?.id === this.user?.id;
    const answered = mine && typeof frame.ref === "string" && this._requests.settle(frame.ref, null, frame);
    if (mine && (answered || !this._rooms.has(frame.room) || frame.reason)) {
      this._rooms.delete(frame.room);
      this._emit("left", frame);
      return;
    }
    const room = this._rooms.get(frame.room);
    if (room && frame.user) {
      room.members.delete(frame.user.id);
      this._emit("left", frame);
      this._emitPresence(room);
    }
  }

  _presence(frame) {
    this._ownAnswer(frame);
    const room = this._rooms.get(frame.room);
    if (!room || !Array.isArray(frame.users)) return;
    room.members = new Map(frame.users.map((u) => [u.id, u]));
    this._emitPresence(room);
  }

  _emitPresence(room) {
    this._emit("presence", { room: room.name, members: this.members(room.name) });
  }

  /** A room with no `since` asks the server what it holds: its newest id
   * (first join), or everything stored (a catch-up after a reconnect, or
   * `recovered: false`), delivered before the room's held live messages. */
  _check(name, catchUp) {
    const room = this._rooms.get(name);
    if (!room || room.last || this._asked.has(name)) return;
    catchUp = catchUp ?? room.joinedBefore === true;
    room.joinedBefore = true;
    this._asked.set(name, catchUp);
    if (catchUp) room.catchUp ??= []; // kept if asked again
    this._internal(catchUp ? { type: "history", room: name } : { type: "history", room: name, limit: 1 });
  }

  _history(frame) {
    const room = this._rooms.get(frame.room);
    if (this._ownAnswer(frame) && room && this._asked.has(frame.room)) {
      const catchUp = this._asked.get(frame.room);
      this._asked.delete(frame.room);
      const messages = (frame.messages ?? []).filter((m) => typeof m.id === "string");
      if (catchUp) {
        const held = room.catchUp ?? [];
        room.catchUp = null;
        for (const message of [...messages, ...held]) this._message(message);
      } else if (!room.last && messages.length) {
        room.last = messages[messages.length - 1].id;
      }
      return;
    }
    if (typeof frame.ref === "string") this._requests.settle(frame.ref, null, frame);
  }

  _message(frame) {
    const room = this._rooms.get(frame.room);
    if (!room || typeof frame.id !== "string" || room.gap) return;
    if (room.catchUp && room.catchUp.length < WINDOW) {
      room.catchUp.push(frame);
      return;
    }
    if (!room.fresh(frame.id)) return;
    room.last = frame.id;
    this._emit("message", frame);
  }

  /** Edits and deletes are replayed too: deliver each event once. */
  _change(frame) {
    const room = this._rooms.get(frame.room);
    const key = `${frame.type}:${frame.id}:${frame.edited_ts ?? frame.ts}`;
    if (room?.fresh(key)) this._emit(frame.type, frame);
  }

  _ack(frame) {
    const request = this._requests.get(frame.ref);
    if (!request) return;
    if (request.answer === "ack") this._requests.settle(frame.ref, null, frame.id);
  }

  _error(frame) {
    const error = new ChatError(String(frame.code), String(frame.message ?? frame.code), frame);
    if (typeof frame.ref === "string" && this._requests.settle(frame.ref, error)) return;
    if (this._ownAnswer(frame)) {
      this._asked.delete(frame.room);
      const room = this._rooms.get(frame.room);
      if (room) Object.assign(room, { catchUp: null, gap: false });
      return; // the client's own request: retried on the next reconnect
    }
    if (typeof frame.room === "string" && this._joining.delete(frame.room)) {
      this._rooms.delete(frame.room); // refused at connect
      this._connectedIfJoined();
    }
    this._emit("error", error);
  }

  _refreshed() {
    if (this._pendingToken) this._token = this._pendingToken;
    this._pendingToken = null;
    this._scheduleRefresh();
  }

  /** `lagged`/`resync`: frames of the room were lost; re-join with since.
   * Live messages until its `joined` are dropped: they were published
   * before the re-join, so its replay brings them, in order after the gap. */
  _gap(frame) {
    const room = this._rooms.get(frame.room);
    if (room && !room.gap) this._rejoin(room);
    this._emit(frame.type, frame);
  }

  _rejoin(room) {
    room.gap = true;
    this._internal(this._joinFrame(room.name));
  }

  _emit(type, event) {
    for (const listener of [...(this._listeners.get(type) ?? [])]) {
      try {
        listener(event);
      } catch (error) {
        setTimeout(() => {
          throw error; // reported as uncaught, without breaking the client
        });
      }
    }
  }
}

const HANDLERS = {
  welcome: ChatClient.prototype._welcome,
  joined: ChatClient.prototype._joined,
  left: ChatClient.prototype._left,
  presence: ChatClient.prototype._presence,
  history: ChatClient.prototype._history,
  message: ChatClient.prototype._message,
  edited: ChatClient.prototype._change,
  deleted: ChatClient.prototype._change,
  ack: ChatClient.prototype._ack,
  error: ChatClient.prototype._error,
  refreshed: ChatClient.prototype._refreshed,
  lagged: ChatClient.prototype._gap,
  resync: ChatClient.prototype._gap,
  receipts(frame) {
    if (typeof frame.ref === "string") this._requests.settle(frame.ref, null, frame);
  },
  typing(frame) {
    this._emit("typing", frame);
  },
  read(frame) {
    this._emit("read", frame);
  },
};

function isFinal(state) {
  return state === "closed" || state === "unauthorized" || state === "refused";
}

