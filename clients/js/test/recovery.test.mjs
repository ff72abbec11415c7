// Reconnect, recovery and sending through a proxy that cuts the network.
import assert from "node:assert/strict";
import { test } from "node:test";

import { WS, connect, proxy, record, sleep, texts, token, unique, until } from "./helpers.mjs";

/** Two signed-in users in a fresh room: `a` through a proxy, `b` direct. */
async function pair(t, options = {}) {
  const room = unique("r");
  const net = await proxy();
  const a = connect(net.url, { token: token(unique("a")), rooms: [room], ...options });
  const b = connect(WS, { token: token(unique("b")), rooms: [room] });
  t.after(() => {
    a.close();
    b.close();
  });
  await Promise.all([a.ready, b.ready]);
  return { room, net, a, b, aEvents: record(a), bEvents: record(b) };
}

test("a cut connection recovers every message once, in order", async (t) => {
  const { room, net, a, b, aEvents } = await pair(t, { reconnect: { initialDelay: 100 } });
  const before = [];
  for (let i = 0; i < 3; i++) before.push(await b.send(room, `before ${i}`));
  await until(() => texts(aEvents, room).length === 3, "the live messages");

  await net.cut();
  await until(() => a.state === "disconnected" || a.state === "connecting", "the disconnect");
  const during = [];
  for (let i = 0; i < 5; i++) during.push(await b.send(room, `during ${i}`));
  await net.restore();
  await until(() => a.state === "connected", "the reconnect");
  const after = [];
  for (let i = 0; i < 3; i++) after.push(await b.send(room, `after ${i}`));

  const ids = [...before, ...during, ...after];
  await until(() => texts(aEvents, room).length >= ids.length, "every message");
  await sleep(300); // a duplicate would come now
  const got = aEvents.message.filter((m) => m.room === room);
  assert.deepEqual(got.map((m) => m.id), ids);
  assert.deepEqual(
    got.map((m) => m.text),
    [0, 1, 2].map((i) => `before ${i}`)
      .concat([0, 1, 2, 3, 4].map((i) => `during ${i}`), [0, 1, 2].map((i) => `after ${i}`)),
  );
  const states = aEvents.state.map((s) => s.state);
  assert.ok(states.includes("disconnected") && states.at(-1) === "connected", states.join());
});

test("a send whose ack is lost is resent with its ref and published once", async (t) => {
  const { room, net, a, bEvents } = await pair(t, { reconnect: { initialDelay: 100 } });
  await net.hold(); // the server's answers wait in the proxy: no ack
  const sent = a.send(room, "exactly once");
  await until(() => texts(bEvents, room).includes("exactly once"), "the publication");
  assert.equal(a.pending, 1);
  await net.cut(); // the ack is lost with the connection
  await net.restore();
  const id = await sent; // the resend is answered with the first id
  assert.equal(a.pending, 0);
  await sleep(500);
  const copies = bEvents.message.filter((m) => m.text === "exactly once");
  assert.deepEqual(copies.map((m) => m.id), [id]);
  const history = await a.history(room);
  assert.equal(history.filter((m) => m.text === "exactly once").length, 1);
});

test("a send while offline waits for the reconnect", async (t) => {
  const { room, net, a, bEvents } = await pair(t, { reconnect: { initialDelay: 100 } });
  await net.cut();
  await until(() => a.state !== "connected", "the disconnect");
  const sent = a.send(room, "queued");
  assert.equal(a.pending, 1);
  await sleep(200);
  await net.restore();
  const id = await sent;
  await until(() => texts(bEvents, room).includes("queued"), "the delivery");
  assert.equal(bEvents.message.find((m) => m.text === "queued").id, id);
});

test("the offline queue is bounded in count and bytes", async (t) => {
  const { room, net, a } = await pair(t, { maxPending: 2, maxPendingBytes: 400 });
  await net.cut();
  await until(() => a.state !== "connected", "the disconnect");
  const first = a.send(room, "one");
  const second = a.send(room, "two");
  await assert.rejects(a.send(room, "three"), { code: "queue_full" });
  assert.equal(a.pending, 2);
  a.close();
  await assert.rejects(first, { code: "closed" });
  await assert.rejects(second, { code: "closed" });

  const small = connect(WS, { token: token(unique("s")), rooms: [room], maxPendingBytes: 200 });
  t.after(() => small.close());
  await assert.rejects(small.send(room, "x".repeat(300)), { code: "queue_full" });
  await small.ready;
  assert.match(await small.send(room, "fits"), /./);
});

test("an unanswered send times out", async (t) => {
  const { room, net, a } = await pair(t, { sendTimeout: 300 });
  await net.cut();
  await assert.rejects(a.send(room, "never acked"), { code: "timeout" });
  assert.equal(a.pending, 0);
});

test("an error frame rejects the send that caused it", async (t) => {
  const { room, a } = await pair(t);
  await assert.rejects(a.send("not-joined-room", "hi"), { code: "not_joined" });
  await assert.rejects(a.send(room, "   "), (error) => error.code === "bad_request" && error.frame.ref !== undefined);
  assert.equal(a.pending, 0);
  assert.match(await a.send(room, "still fine"), /./);
});

test("a silent connection is found by the heartbeat and replaced", async (t) => {
  const { room, net, a, bEvents } = await pair(t, { heartbeat: 300, reconnect: { initialDelay: 50 } });
  await net.hold(); // the TCP connection stays up, nothing comes through
  const events = record(a);
  await until(() => events.state.some((s) => s.state === "disconnected"), "the dead socket found");
  assert.equal(events.state.find((s) => s.state === "disconnected").reason, "no answer to ping");
  await net.restore();
  await until(() => a.state === "connected", "the reconnect");
  const id = await a.send(room, "alive again");
  await until(() => bEvents.message.some((m) => m.id === id), "the delivery");
});

test("a room with no message seen yet is caught up from its history", async (t) => {
  const { room, net, a, b, aEvents } = await pair(t, { reconnect: { initialDelay: 50 } });
  await net.cut(); // a has seen nothing in the room: no since to give
  await until(() => a.state !== "connected", "the disconnect");
  const ids = [];
  for (const text of ["c1", "c2", "c3"]) ids.push(await b.send(room, text));
  await net.restore();
  await until(() => texts(aEvents, room).length === 3, "the catch-up");
  const later = await b.send(room, "c4");
  await until(() => texts(aEvents, room).length === 4, "a live message");
  await sleep(300);
  assert.deepEqual(aEvents.message.map((m) => m.id), [...ids, later]);
});

test("direct messages missed while offline are recovered once", async (t) => {
  const { net, a, b, aEvents } = await pair(t, { reconnect: { initialDelay: 50 } });
  await b.sendTo(a.user.id, "dm before");
  await until(() => aEvents.message.some((m) => m.text === "dm before"), "the first DM");
  await net.cut();
  await until(() => a.state !== "connected", "the disconnect");
  await b.sendTo(a.user.id, "dm while away");
  await net.restore();
  await until(() => aEvents.message.some((m) => m.text === "dm while away"), "the missed DM");
  await sleep(300);
  const dms = aEvents.message.filter((m) => m.room === a.inbox);
  assert.deepEqual(dms.map((m) => m.text), ["dm before", "dm while away"]);
  assert.ok(dms.every((m) => m.to === a.user.id && m.user.id === b.user.id));
});
