// Every feature of the protocol, through the client's API.
import assert from "node:assert/strict";
import { test } from "node:test";

import { WS, connect, record, token, unique, until } from "./helpers.mjs";

async function user(t, rooms, name = unique("u")) {
  const client = connect(WS, { token: token(name), rooms });
  t.after(() => client.close());
  const events = record(client);
  await client.ready;
  return { client, events, id: name };
}

test("the member list follows joins and leaves", async (t) => {
  const room = unique("r");
  const a = await user(t, [room]);
  await until(() => a.client.members(room).some((m) => m.id === a.id), "own presence");
  const b = await user(t, []);
  await b.client.join(room);
  await until(() => a.client.members(room).some((m) => m.id === b.id), "b in a's list");
  // b's list comes from its own presence request, answered on its own
  // time (through Redis, after a's notice may already have arrived).
  await until(() => b.client.members(room).length === 2, "b's list");
  assert.deepEqual(
    b.client.members(room).map((m) => m.id).sort(),
    [a.id, b.id].sort(),
  );
  assert.ok(a.events.joined.some((j) => j.user.id === b.id));
  await b.client.leave(room);
  await until(() => !a.client.members(room).some((m) => m.id === b.id), "b gone from a's list");
  assert.deepEqual(a.events.presence.at(-1), { room, members: a.client.members(room) });
  assert.ok(a.events.left.some((l) => l.user.id === b.id));
  await assert.rejects(b.client.send(room, "after leaving"), { code: "not_joined" });
});

test("a direct message reaches the other user's inbox", async (t) => {
  const a = await user(t, []);
  const b = await user(t, []);
  assert.equal(b.client.inbox, `@${b.id}`);
  const id = await a.client.sendTo(b.id, "psst", { meta: { k: 1 } });
  assert.match(id, /./);
  const got = await until(() => b.events.message.find((m) => m.text === "psst"), "the DM");
  assert.equal(got.room, b.client.inbox);
  assert.equal(got.to, b.id);
  assert.equal(got.user.id, a.id);
  assert.deepEqual(got.meta, { k: 1 });
  // The sender's own copy, in its inbox, with the acknowledged id.
  const own = await until(() => a.events.message.find((m) => m.text === "psst"), "own copy");
  assert.equal(own.id, id);
  assert.equal(own.room, a.client.inbox);
});

test("edit and delete reach the room and history", async (t) => {
  const room = unique("r");
  const a = await user(t, [room]);
  const b = await user(t, [room]);
  const id = await a.client.send(room, "draft");
  await a.client.edit(room, id, "final");
  const edited = await until(() => b.events.edited.find((e) => e.id === id), "edited");
  assert.equal(edited.text, "final");
  await assert.rejects(b.client.edit(room, id, "not mine"), { code: "forbidden" });
  await a.client.delete(room, id);
  await until(() => b.events.deleted.find((e) => e.id === id), "deleted");
  const [message] = (await b.client.history(room)).filter((m) => m.id === id);
  assert.equal(message.deleted, true);
  assert.equal(message.text, undefined);
});

test("history pages backwards, oldest first", async (t) => {
  const room = unique("r");
  const a = await user(t, [room]);
  const ids = [];
  for (const text of ["h1", "h2", "h3"]) ids.push(await a.client.send(room, text));
  const last = await a.client.history(room, { limit: 2 });
  assert.deepEqual(last.map((m) => m.text), ["h2", "h3"]);
  const older = await a.client.history(room, { before: ids[1] });
  assert.deepEqual(older.map((m) => m.text), ["h1"]);
  await assert.rejects(a.client.history(room, { before: "no-such-id" }), { code: "not_found" });
});

test("typing notices reach the other members", async (t) => {
  const room = unique("r");
  const a = await user(t, [room]);
  const b = await user(t, [room]);
  a.client.typing(room);
  const notice = await until(() => b.events.typing.find((e) => e.room === room), "typing");
  assert.equal(notice.user.id, a.id);
  a.client.typingTo(b.id);
  await until(() => b.events.typing.find((e) => e.room === b.client.inbox), "typing in a DM");
});

test("read marks are shared and listed by receipts", async (t) => {
  const room = unique("r");
  const a = await user(t, [room]);
  const b = await user(t, [room]);
  const id = await b.client.send(room, "read me");
  await a.client.markRead(room, id);
  const mark = await until(() => b.events.read.find((e) => e.user.id === a.id), "the read notice");
  assert.equal(mark.id, id);
  assert.deepEqual(await b.client.receipts(room), { [a.id]: id });
});

test("messages carry meta, and a send's id is its message's", async (t) => {
  const room = unique("r");
  const a = await user(t, [room]);
  const b = await user(t, [room]);
  const id = await a.client.send(room, "with meta", { meta: { reply_to: "x" } });
  const got = await until(() => b.events.message.find((m) => m.id === id), "the message");
  assert.deepEqual(got.meta, { reply_to: "x" });
  assert.equal(got.user.id, a.id);
});

test("invalid room names are refused before any frame; a left room is gone", async (t) => {
  const a = await user(t, []);
  await assert.rejects(a.client.join(`@${unique("someone")}`), TypeError);
  await assert.rejects(a.client.join("has space"), TypeError);
  assert.throws(() => connect(WS, { rooms: ["bad/name"] }), TypeError);
  const room = unique("r");
  await a.client.join(room);
  await until(() => a.client.members(room).some((m) => m.id === a.id), "own presence");
  await a.client.leave(room);
  assert.deepEqual(a.client.members(room), []);
  await assert.rejects(a.client.history(room), { code: "not_joined" });
});
