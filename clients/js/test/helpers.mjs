// Shared by the Node tests: the running example app (CHAT_HTTP), tokens
// signed with its secret (CHAT_SECRET), and TCP proxies in front of it
// that the pytest wrapper runs and these tests cut (CHAT_CONTROL).
import { createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";

export { connect, ChatError } from "../../../sanic_chat/static/client.js";

export const HTTP = process.env.CHAT_HTTP;
const CONTROL = process.env.CHAT_CONTROL;
const SECRET = process.env.CHAT_SECRET;
if (!HTTP || !CONTROL || !SECRET) {
  throw new Error("run through tests/test_js_client.py (CHAT_HTTP, CHAT_CONTROL, CHAT_SECRET)");
}
export const WS = HTTP.replace(/^http/, "ws") + "/ws";

/** A fresh name, so that tests sharing one server never meet. */
export function unique(prefix) {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** An HS256 JWT as the example app's login makes: sub, name, exp. */
export function token(sub, { expiresIn = 600, secret = SECRET } = {}) {
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ sub, name: sub, exp: Math.floor(Date.now() / 1000) + expiresIn });
  const signature = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${signature}`;
}

/** A TCP proxy to the app: `url` to connect through, cut/restore/hold. */
export async function proxy() {
  const port = await (await fetch(`${CONTROL}/proxy`)).text();
  const act = async (what) => {
    const reply = await fetch(`${CONTROL}/proxy/${port}/${what}`);
    if (!reply.ok) throw new Error(`proxy ${what}: ${reply.status}`);
  };
  return {
    url: `ws://127.0.0.1:${port}/ws`,
    cut: () => act("cut"),
    restore: () => act("restore"),
    hold: () => act("hold"),
  };
}

/** Wait until `check()` is truthy (polled), or fail after `ms`. */
export async function until(check, what, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Record every event of `client` by type. */
export function record(client) {
  const events = {};
  for (const type of ["welcome", "message", "edited", "deleted", "joined", "left", "presence", "typing", "read", "lagged", "resync", "error", "state"]) {
    events[type] = [];
    client.on(type, (event) => events[type].push(event));
  }
  return events;
}

/** The texts of the messages recorded in `room`. */
export const texts = (events, room) =>
  events.message.filter((m) => m.room === room).map((m) => m.text);

export const CLIENT_SOURCE = readFileSync(new URL("../../../sanic_chat/static/client.js", import.meta.url), "utf8");
export const TYPES_SOURCE = readFileSync(new URL("../../../sanic_chat/static/client.d.ts", import.meta.url), "utf8");
