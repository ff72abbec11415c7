// Answers matched by ref, timeouts, caller refs, markRead, welcome and
// reconnect(): the client against the example app, through a proxy.
import assert from "node:assert/strict";
import { test } from "node:test";

import { WS, connect, proxy, record, sleep, texts, token, unique, until } from "./helpers.mjs";

async function pair(t, options = {}) {
  const room = unique("r");
  const net = await proxy();
  const a = connect(net.url, { token: token(unique("a")), rooms: [room], ...options });
  const b = connect(WS, { token: token(unique("b")), rooms: [room] });
  const aEvents = record(a);
  const welcomes = [];
  a.on("welcome", (event) => welcomes.push(event));
  t.after(() => {
    a.close();
    b.close();
  });
  await Promise.all([a.ready, b.ready]);
  return { room, net, a, b, aEvents, bEvents: record(b), welcomes };
}

test("rate-limited requests time out without shifting later answers", async (t) => {
  const { room, a, aEvents } = await pair(t, { sendTimeout: 1500 });
  for (const text of ["one", "two", "three"]) await a.send(room, text);
  await sleep(2100); // a full bucket (burst 20)
  const limits = Array.from({ length: 30 }, (_, i) => (i % 3) + 1);
  const results = await Promise.allSettled(limits.map((limit) => a.history(room, { limit })));
  const answered = results.filter((r) => r.status === "fulfilled");
  const refused = results.filter((r) => r.status === "rejected");
  assert.ok(answered.length >= 10 && refused.length >= 5, `${answered.length} answered`);
  results.forEach((result, i) => {
    if (result.status === "rejected") return assert.equal(result.reason.code, "timeout");
    // Each answer is its own request's: as many messages as it asked for.
    const expected = ["one", "two", "three"].slice(3 - limits[i]);
    assert.deepEqual(result.value.map((m) => m.text), expected);
  });
  assert.ok(aEvents.error.some((e) => e.code === "rate_limited"));
  await sleep(1100);
  assert.deepEqual((await a.history(room, { limit: 2 })).map((m) => m.text), ["two", "three"]);
});

test("history, receipts, join and leave reject with timeout when unanswered", async (t) => {
  const { room, net, a } = await pair(t, { sendTimeout: 300 });
  await net.hold();
  const requests = [a.history(room), a.receipts(room), a.join(unique("j")), a.leave(room)];
  for (const request of requests) await assert.rejects(request, { code: "timeout" });
  await net.cut(); // else the held socket outlives the test
});

test("pending counts unacknowledged sends only", async (t) => {
  const { room, net, a } = await pair(t);
  await net.cut();
  await until(() => a.state !== "connected", "the disconnect");
  const waiting = [a.history(room), a.receipts(room), a.send(room, "one"), a.sendTo("someone", "two")];
  waiting.forEach((request) => request.catch(() => {}));
  assert.equal(a.pending, 2);
  await net.restore();
  await Promise.allSettled(waiting);
  assert.equal(a.pending, 0);
});

test("a send that timed out is retried with its ref and published once", async (t) => {
  const { room, net, a, bEvents } = await pair(t, { sendTimeout: 800, reconnect: { initialDelay: 50 } });
  await net.hold(); // published, but the ack waits in the proxy
  const error = await a.send(room, "retry me").catch((e) => e);
  assert.equal(error.code, "timeout");
  assert.match(error.ref, /./);
  assert.ok(texts(bEvents, room).includes("retry me"));
  await net.cut();
  await net.restore();
  await until(() => a.state === "connected", "the reconnect");
  const id = await a.send(room, "retry me", { ref: error.ref });
  await sleep(300);
  assert.deepEqual(bEvents.message.filter((m) => m.text === "retry me").map((m) => m.id), [id]);
  const mine = await a.send(room, "chosen", { ref: "my-own-ref-1" });
  assert.equal(await a.send(room, "chosen", { ref: "my-own-ref-1" }), mine);
  for (const ref of ["", "x".repeat(129), 7]) {
    await assert.rejects(a.send(room, "bad ref", { ref }), TypeError);
  }
  const refused = await a.send("not-joined-room", "hi", { ref: "refused-1" }).catch((e) => e);
  assert.deepEqual([refused.code, refused.ref], ["not_joined", "refused-1"]);
});

test("markRead resolves on the ack and rejects its own errors", async (t) => {
  const { room, a, b, aEvents } = await pair(t);
  const id = await b.send(room, "read me");
  assert.equal(await a.markRead(room, id), undefined);
  await assert.rejects(a.markRead(room, "no-such-id"), { code: "not_found" });
  assert.deepEqual(await b.receipts(room), { [a.user.id]: id });
  assert.equal(aEvents.error.length, 0);
});

test("welcome is emitted on every connect; reconnect() skips the backoff", async (t) => {
  const { net, a, welcomes } = await pair(t, { reconnect: { initialDelay: 60000 } });
  assert.equal(welcomes.length, 1);
  assert.deepEqual(welcomes[0].user, a.user);
  assert.equal(welcomes[0].inbox, a.inbox);
  assert.equal(welcomes[0].rooms.length, 1);
  await net.cut();
  await until(() => a.state === "disconnected", "the disconnect");
  await net.restore();
  await sleep(300);
  assert.equal(a.state, "disconnected"); // a minute of backoff to go
  a.reconnect();
  await until(() => a.state === "connected", "the reconnect", 5000);
  assert.equal(welcomes.length, 2);
});
