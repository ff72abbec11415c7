// A WebSocket that follows the browser's network state, for the chat
// client's `WebSocket` option.
//
// Browsers keep an open socket when the network goes away (and Chromium's
// offline mode keeps it working), and every attempt made while offline
// fails at once with a console error. So: on "offline" every socket ends
// at once (as a lost connection, code 1006, which the client reconnects
// after), and a socket created while offline opens only when the network
// is back, which also reconnects at once instead of after a backoff delay.

const live = new Set();

export class NetworkAwareSocket extends EventTarget {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(url, protocols) {
    super();
    this.url = String(url);
    this._protocols = protocols;
    this._socket = null;
    this._state = 0;
    live.add(this);
    if (navigator.onLine) this._open();
  }

  get readyState() { return this._socket && this._state !== 3 ? this._socket.readyState : this._state; }
  get protocol() { return this._socket ? this._socket.protocol : ""; }
  get bufferedAmount() { return this._socket ? this._socket.bufferedAmount : 0; }
  get extensions() { return ""; }
  get binaryType() { return "blob"; }

  send(data) {
    if (this.readyState !== 1) throw new DOMException("the socket is not open", "InvalidStateError");
    this._socket.send(data);
  }

  close(code, reason) {
    if (this._state === 3) return;
    if (this._socket) this._socket.close(code, reason);
    else this._end(code || 1005, reason || "", true);
  }

  _open() {
    const ws = new WebSocket(this.url, this._protocols);
    this._socket = ws;
    ws.onopen = () => this._emit(new Event("open"));
    ws.onmessage = (e) => this._emit(new MessageEvent("message", { data: e.data }));
    ws.onerror = () => this._emit(new Event("error"));
    ws.onclose = (e) => this._end(e.code, e.reason, e.wasClean);
  }

  // The network went away: end as a dropped connection would, now.
  _drop() {
    const ws = this._socket;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      if (ws.readyState <= 1) ws.close(1000, "offline");
    }
    this._end(1006, "offline", false);
  }

  _end(code, reason, wasClean) {
    if (this._state === 3) return;
    this._state = 3;
    live.delete(this);
    this._emit(new CloseEvent("close", { code, reason, wasClean }));
  }

  _emit(event) {
    this.dispatchEvent(event);
    const handler = this[`on${event.type}`];
    if (typeof handler === "function") handler.call(this, event);
  }
}

window.addEventListener("offline", () => {
  for (const socket of [...live]) socket._drop();
});
window.addEventListener("online", () => {
  for (const socket of [...live]) if (!socket._socket) socket._open();
});
