// Load generator for the sanic-chat benchmarks (driven by bench/run.py).
//
// One Node.js process, no dependencies. Its WebSocket client (RawSocket
// below) does the least a client can: a plain HTTP/1.1 upgrade, then
// unmasked server frames parsed in place from the TCP stream, masked
// frames out. Per delivery it costs well under the server's work, so the
// server, not the client, is what gets measured (run.py pins the two to
// different CPUs and reports both CPU uses). It speaks three dialects:
//
//   chat      sanic-chat's /ws protocol, every socket with its own JWT
//   bare      bench/bare_server.py (plain websockets.broadcast())
//   socketio  bench/socketio_server.py (Engine.IO 4 over a WebSocket)
//
// Every message text is "m|<sender>|<seq>|<send time ms>|" padded to 64
// bytes, so receivers compute latency (one clock: one process) and check
// that every member of a room saw the same messages in the same order.
//
// Usage: node bench/loadgen.mjs '<json spec>'  (see run.py for the spec)
// Output: JSON lines on stdout: {"event":"start"} when the measured phase
// begins, {"event":"connected"} for the idle and scale scenarios (then it
// waits for a line on stdin), and a final {"event":"result", ...}.

import { createHash, createHmac, randomBytes } from "node:crypto";
import { connect } from "node:net";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";

const spec = {
  protocol: "chat",
  urls: ["ws://127.0.0.1:8000"],
  scenario: "fanout",
  receivers: 100,
  rooms: 1,
  senders: 1,
  window: 20,
  messages: 200,
  rate: 20,
  seconds: 5,
  drainSeconds: 5,
  concurrency: 100,
  secret: null,
  timeout: 300,
  ...JSON.parse(process.argv[2] ?? "{}"),
};

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const b64url = (s) => Buffer.from(s).toString("base64url");

// Latency samples (ms) and per-receiver order digests.
let latencies = new Float64Array(1 << 16);
let deliveries = 0;
// remaining[sender][seq]: receivers a message has still to reach.
const remaining = [];
let completed = 0;
let onComplete = () => {};

function record(ms) {
  if (deliveries === latencies.length) {
    const bigger = new Float64Array(latencies.length * 2);
    bigger.set(latencies);
    latencies = bigger;
  }
  latencies[deliveries++] = ms;
}

function token(i) {
  const header = b64url('{"alg":"HS256","typ":"JWT"}');
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const payload = b64url(
    JSON.stringify({ sub: `bench:${i}`, name: `b${i}`, exp }),
  );
  const sig = createHmac("sha256", spec.secret)
    .update(`${header}.${payload}`)
    .digest("base64url");
  return `${header}.${payload}.${sig}`;
}

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// A minimal RFC 6455 client: text frames, ping/pong, close. Callbacks, not
// events: onopen(), onmessage(payload: Buffer), onerror(Error), onclose().
class RawSocket {
  constructor(url) {
    const u = new URL(url);
    this.key = randomBytes(16).toString("base64");
    this.buf = null;
    this.open = false;
    this.sock = connect(Number(u.port), u.hostname);
    this.sock.setNoDelay(true);
    this.sock.on("connect", () =>
      this.sock.write(
        `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n` +
          "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Key: ${this.key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      ),
    );
    this.sock.on("data", (d) => this.data(d));
    this.sock.on("error", (e) => this.onerror(e));
    this.sock.on("close", () => this.onclose());
  }

  data(chunk) {
    let buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    if (!this.open) {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return void (this.buf = buf);
      const head = buf.toString("latin1", 0, end);
      const status = Number(head.split(" ", 2)[1]);
      const accept = createHash("sha1").update(this.key + WS_GUID).digest("base64");
      if (status !== 101 || !head.includes(accept)) {
        this.onerror(new Error(`HTTP ${status}`));
        return this.terminate();
      }
      this.open = true;
      this.onopen();
      buf = buf.subarray(end + 4);
    }
    let at = 0;
    while (buf.length - at >= 2) {
      const op = buf[at] & 0x0f;
      let len = buf[at + 1] & 0x7f;
      let start = at + 2;
      if (len === 126) {
        if (buf.length - at < 4) break;
        len = buf.readUInt16BE(at + 2);
        start = at + 4;
      } else if (len === 127) {
        if (buf.length - at < 10) break;
        len = Number(buf.readBigUInt64BE(at + 2));
        start = at + 10;
      }
      if (buf.length < start + len) break;
      const payload = buf.subarray(start, start + len);
      at = start + len;
      if (op === 1 || op === 2) this.onmessage(payload);
      else if (op === 9) this.frame(0x8a, payload);
      else if (op === 8) {
        this.frame(0x88, payload.subarray(0, 2));
        this.sock.end();
      }
    }
    this.buf = at < buf.length ? Buffer.from(buf.subarray(at)) : null;
  }

  frame(first, payload) {
    const len = payload.length;
    const head = len < 126 ? 2 : 4;
    const out = Buffer.allocUnsafe(head + 4 + len);
    out[0] = first;
    if (len < 126) out[1] = 0x80 | len;
    else {
      out[1] = 0x80 | 126;
      out.writeUInt16BE(len, 2);
    }
    const mask = randomBytes(4);
    mask.copy(out, head);
    for (let k = 0; k < len; k++) out[head + 4 + k] = payload[k] ^ mask[k & 3];
    this.sock.write(out);
  }

  send(text) {
    this.frame(0x81, Buffer.from(text));
  }

  terminate() {
    this.sock.destroy();
  }
}

const MARK = Buffer.from("m|");

// A client: opens, becomes ready (member of its rooms), counts deliveries.
class Client {
  constructor(i, rooms, counted) {
    this.i = i;
    this.rooms = rooms;
    this.counted = counted; // receivers count; senders only send
    this.digest = 0;
    this.got = 0;
    const base = spec.urls[i % spec.urls.length];
    let url;
    if (spec.protocol === "chat") {
      const q = rooms.map((r) => `room=${r}`);
      if (spec.secret) q.push(`token=${token(i)}`);
      url = `${base}/ws?${q.join("&")}`;
    } else if (spec.protocol === "bare") {
      url = `${base}/?${rooms.map((r) => `room=${r}`).join("&")}`;
    } else {
      url = `${base}/socket.io/?EIO=4&transport=websocket`;
    }
    this.ready = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.pending = rooms.length;
    const ws = new RawSocket(url);
    this.ws = ws;
    ws.onerror = (e) => this.reject(e);
    ws.onclose = () => this.reject(new Error("closed before ready"));
    ws.onopen = spec.protocol === "bare" ? () => this.resolve() : () => {};
    ws.onmessage = (data) => this.onMessage(data);
  }

  onMessage(data) {
    const at = data.indexOf(MARK);
    if (at >= 0) {
      if (this.counted) this.deliver(data, at);
      return;
    }
    if (spec.protocol === "chat") {
      if (this.pending && data.includes('"type":"joined"')) {
        if (--this.pending === 0) this.resolve();
      } else if (this.pending && data.includes('"type":"error"')) {
        // Accepted, then refused a room (e.g. "unavailable"): not ready.
        const code = /"code":"([a-z_]+)"/.exec(data.toString())?.[1];
        this.reject(new Error(`error frame ${code}`));
      }
    } else if (spec.protocol === "socketio") {
      const s = data.toString();
      if (s === "2") this.ws.send("3");
      else if (s.startsWith("0{")) this.ws.send("40");
      else if (s.startsWith("40")) {
        for (const r of this.rooms) this.ws.send(`42["join","${r}"]`);
      } else if (s.startsWith('42["joined"')) {
        if (--this.pending === 0) this.resolve();
      }
    }
  }

  deliver(data, at) {
    // "m|<sender>|<seq>|<ms>|": parsed from the bytes, no strings made.
    let k = at + 2;
    let sender = 0;
    for (let c = data[k]; c !== 124; c = data[++k]) sender = sender * 10 + c - 48;
    let seq = 0;
    for (let c = data[++k]; c !== 124; c = data[++k]) seq = seq * 10 + c - 48;
    let ms = 0;
    let scale = 0;
    for (let c = data[++k]; c !== 124; c = data[++k]) {
      if (c === 46) scale = 1;
      else {
        ms = ms * 10 + c - 48;
        if (scale) scale *= 10;
      }
    }
    record(performance.now() - (scale ? ms / scale : ms));
    this.got++;
    // An order digest: equal digests mean equal sequences (whp).
    this.digest = (Math.imul(this.digest, 31) + Math.imul(sender, 1000003) + seq) | 0;
    const row = remaining[sender - spec.receivers];
    if (--row[seq] === 0) {
      completed++;
      onComplete();
    }
  }

  send(room, seq) {
    const text = `m|${this.i}|${seq}|${performance.now().toFixed(3)}|`.padEnd(64, ".");
    if (spec.protocol === "socketio") {
      this.ws.send(`42["say","${room}","${text}"]`);
    } else {
      this.ws.send(`{"type":"message","room":"${room}","text":"${text}"}`);
    }
  }
}

// Open clients with at most `concurrency` handshakes in flight.
async function openAll(specs) {
  const clients = [];
  let failures = 0;
  let next = 0;
  const errors = {};
  async function worker() {
    while (next < specs.length) {
      const [i, rooms, counted] = specs[next++];
      const c = new Client(i, rooms, counted);
      try {
        await c.ready;
        clients.push(c);
      } catch (e) {
        failures++;
        errors[e.message] = (errors[e.message] ?? 0) + 1;
        c.ws.terminate();
      }
    }
  }
  await Promise.all(
    Array.from({ length: Math.min(spec.concurrency, specs.length) }, worker),
  );
  return { clients, failures, errors };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

function latencyStats() {
  const sorted = latencies.slice(0, deliveries).sort();
  return {
    p50_ms: percentile(sorted, 0.5),
    p99_ms: percentile(sorted, 0.99),
    max_ms: sorted.length ? sorted[sorted.length - 1] : null,
  };
}

// Rooms r0..r(n-1); receiver k is in room k % rooms.
const roomName = (k) => (spec.rooms === 1 ? "lobby" : `r${k}`);

function membersByRoom(receivers) {
  const by = new Map();
  for (const c of receivers) {
    for (const r of c.rooms) {
      if (!by.has(r)) by.set(r, []);
      by.get(r).push(c);
    }
  }
  return by;
}

function orderCheck(receivers) {
  let rooms = 0;
  let disagreeing = 0;
  for (const members of membersByRoom(receivers).values()) {
    rooms++;
    const first = members[0];
    if (members.some((c) => c.digest !== first.digest || c.got !== first.got))
      disagreeing++;
  }
  return { rooms, rooms_out_of_order: disagreeing };
}

async function setup() {
  const specs = [];
  for (let k = 0; k < spec.receivers; k++)
    specs.push([k, [roomName(k % spec.rooms)], true]);
  const { clients, failures, errors } = await openAll(specs);
  const senderSpecs = [];
  const perSender = Math.max(1, Math.ceil(spec.rooms / spec.senders));
  for (let s = 0; s < spec.senders; s++) {
    const rooms = [];
    for (let j = 0; j < perSender; j++) {
      const k = s * perSender + j;
      if (k < spec.rooms) rooms.push(roomName(k));
    }
    senderSpecs.push([spec.receivers + s, rooms, false]);
  }
  const opened = await openAll(senderSpecs);
  if (opened.failures) throw new Error(`senders failed: ${JSON.stringify(opened.errors)}`);
  const sizes = new Map();
  for (const [r, members] of membersByRoom(clients)) sizes.set(r, members.length);
  return { receivers: clients, senders: opened.clients, failures, errors, sizes };
}

function expect(sizes, sender, seq, room) {
  const s = sender.i - spec.receivers;
  remaining[s] ??= new Int32Array(1 << 16);
  remaining[s][seq] = sizes.get(room) ?? 0;
}

async function fanout() {
  const { receivers, senders, failures, errors, sizes } = await setup();
  await sleep(500);
  const sender = senders[0];
  const room = sender.rooms[0];
  const { begin, sent } = await pumpMessages(sender, room, sizes);
  return finishRun(begin, receivers, sent, sizes.get(room), failures, errors);
}

// Send up to spec.messages from one sender to its room, at most
// spec.window not yet seen by every member, for up to spec.seconds.
async function pumpMessages(sender, room, sizes) {
  let sent = 0;
  const deadline = performance.now() + spec.seconds * 1000;
  let finish;
  const done = new Promise((r) => (finish = r));
  let sending = true;
  const pump = () => {
    while (sending && sent - completed < spec.window) {
      if (sent >= spec.messages || performance.now() > deadline) {
        sending = false;
        break;
      }
      expect(sizes, sender, sent, room);
      sender.send(room, sent++);
    }
    if (!sending && completed === sent) finish();
  };
  onComplete = pump;
  const begin = measure();
  pump();
  await Promise.race([done, sleep((spec.seconds + spec.drainSeconds) * 1000)]);
  return { begin, sent };
}

// The scale row: every receiver connects (the connect rate is timed),
// run.py reads the servers' memory, then one sender's messages go one at
// a time (the next once every receiver has the previous) to all of them.
async function scale() {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const { receivers, senders, failures, errors, sizes } = await setup();
  const connectSeconds = (performance.now() - t0) / 1000;
  const connectCpu = process.cpuUsage(cpu0);
  emit({ event: "connected", connected: receivers.length, failures, errors });
  await stdinLine();
  const sender = senders[0];
  const room = sender.rooms[0];
  const { begin, sent } = await pumpMessages(sender, room, sizes);
  return {
    ...finishRun(begin, receivers, sent, sizes.get(room), failures, errors),
    connected: receivers.length,
    connect_seconds: connectSeconds,
    connections_per_s: (receivers.length + senders.length) / connectSeconds,
    connect_client_cpu: (connectCpu.user + connectCpu.system) / 1e6 / connectSeconds,
  };
}

// Wait for run.py's go-ahead (a line on stdin).
async function stdinLine() {
  const lines = createInterface({ input: process.stdin });
  await new Promise((r) => lines.once("line", r));
  lines.close();
}

async function rate() {
  const { receivers, senders, failures, errors, sizes } = await setup();
  await sleep(500);
  const total = Math.round(spec.rate * spec.seconds);
  let sent = 0;
  let expected = 0;
  const begin = measure();
  const rooms = senders.flatMap((s) => s.rooms.map((r) => [s, r]));
  await new Promise((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(
        total,
        Math.floor(((performance.now() - begin.t) / 1000) * spec.rate) + 1,
      );
      while (sent < due) {
        const [s, r] = rooms[sent % rooms.length];
        expect(sizes, s, sent, r);
        expected += sizes.get(r) ?? 0;
        s.send(r, sent++);
      }
      if (sent >= total) {
        clearInterval(tick);
        resolve();
      }
    }, 2);
  });
  let finish;
  const done = new Promise((r) => (finish = r));
  onComplete = () => completed === sent && finish();
  onComplete();
  await Promise.race([done, sleep(spec.drainSeconds * 1000)]);
  return finishRun(begin, receivers, sent, null, failures, errors, expected);
}

function measure() {
  emit({ event: "start" });
  return { t: performance.now(), cpu: process.cpuUsage() };
}

function finishRun(begin, receivers, sent, members, failures, errors, expected) {
  const elapsed = (performance.now() - begin.t) / 1000;
  const cpu = process.cpuUsage(begin.cpu);
  expected ??= sent * members;
  return {
    sent,
    deliveries,
    expected,
    lost: expected - deliveries,
    seconds: elapsed,
    deliveries_per_s: deliveries / elapsed,
    ...latencyStats(),
    client_cpu: (cpu.user + cpu.system) / 1e6 / elapsed,
    connect_failures: failures,
    connect_errors: errors,
    ...orderCheck(receivers),
    clients: receivers,
  };
}

async function idle() {
  const specs = [];
  for (let k = 0; k < spec.receivers; k++) specs.push([k, ["lobby"], true]);
  const { clients, failures, errors } = await openAll(specs);
  emit({ event: "connected", connected: clients.length, failures, errors });
  await stdinLine();
  return { connected: clients.length, connect_failures: failures, connect_errors: errors, clients };
}

async function storm() {
  const specs = [];
  for (let k = 0; k < spec.receivers; k++) specs.push([k, ["lobby"], true]);
  emit({ event: "start" }); // run.py reads the server's CPU from here
  const begin = measure();
  const { clients, failures, errors } = await openAll(specs);
  const elapsed = (performance.now() - begin.t) / 1000;
  const cpu = process.cpuUsage(begin.cpu);
  return {
    connected: clients.length,
    connect_failures: failures,
    connect_errors: errors,
    seconds: elapsed,
    connections_per_s: clients.length / elapsed,
    client_cpu: (cpu.user + cpu.system) / 1e6 / elapsed,
    clients,
  };
}

const scenarios = { fanout, rate, idle, storm, scale };

setTimeout(() => {
  emit({ event: "result", error: `timed out after ${spec.timeout} s` });
  process.exit(2);
}, spec.timeout * 1000).unref();

try {
  const { clients, ...result } = await scenarios[spec.scenario]();
  emit({ event: "result", ...result });
  for (const c of clients) c.ws.terminate();
  process.exit(0);
} catch (e) {
  emit({ event: "result", error: String(e?.stack ?? e) });
  process.exit(1);
}
