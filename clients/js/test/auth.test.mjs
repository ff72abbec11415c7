// Refused credentials, getToken, token refresh, and the served copy.
import assert from "node:assert/strict";
import { test } from "node:test";

import { CLIENT_SOURCE, HTTP, TYPES_SOURCE, WS, connect, record, sleep, token, unique, until } from "./helpers.mjs";

const fast = { initialDelay: 50, maxDelay: 200 };

test("an expired token: getToken is asked once more, then unauthorized", async (t) => {
  let calls = 0;
  const client = connect(WS, {
    rooms: [unique("r")],
    reconnect: fast,
    getToken: () => {
      calls += 1;
      return token(unique("late"), { expiresIn: -3600 });
    },
  });
  t.after(() => client.close());
  const events = record(client);
  await assert.rejects(client.ready, { code: "unauthorized" });
  assert.equal(client.state, "unauthorized");
  assert.equal(calls, 2); // before the connect, and the one retry
  await sleep(1000);
  assert.equal(calls, 2, "no reconnect loop");
  assert.equal(events.state.at(-1).state, "unauthorized");
  await assert.rejects(client.send("lobby", "hi"), { code: "unauthorized" });
});

test("a token the server rejects (bad signature) ends unauthorized, no loop", async (t) => {
  const client = connect(WS, {
    token: token(unique("forged"), { secret: "not-the-server-secret-not-the-server-secret" }),
    reconnect: fast,
  });
  t.after(() => client.close());
  const events = record(client);
  await assert.rejects(client.ready, { code: "unauthorized" });
  const attempts = events.state.filter((s) => s.state === "connecting").length;
  await sleep(1000);
  assert.equal(events.state.filter((s) => s.state === "connecting").length, attempts);
  assert.ok(attempts <= 3, `${attempts} attempts`);
});

test("without a token, repeated refusals end in refused, no loop", async (t) => {
  // This app wants a token: 401 before the upgrade, which a WebSocket
  // cannot see; a server that answers HTTP but refuses every upgrade is
  // given up on after five attempts.
  const client = connect(WS, { rooms: [unique("r")], reconnect: fast });
  t.after(() => client.close());
  const events = record(client);
  await assert.rejects(client.ready, { code: "refused" });
  assert.equal(client.state, "refused");
  assert.equal(events.state.filter((s) => s.state === "connecting").length, 4);
  await sleep(700);
  assert.equal(events.state.filter((s) => s.state === "connecting").length, 4);
});

test("a getToken that returns a fresh token after a refusal connects", async (t) => {
  const user = unique("fresh");
  let calls = 0;
  const client = connect(WS, {
    rooms: [unique("r")],
    reconnect: fast,
    getToken: () => {
      calls += 1;
      return calls === 1 ? token(user, { expiresIn: -60 }) : token(user);
    },
  });
  t.after(() => client.close());
  await client.ready;
  assert.equal(client.state, "connected");
  assert.equal(client.user.id, user);
  assert.equal(calls, 2);
});

test("a close with 1008 asks getToken once and reconnects", async (t) => {
  // The server closes with 1008 when the token expires without refresh;
  // a getToken that cannot refresh in time (it answers too late) makes
  // the client meet that close, then its fresh token gets it back in.
  const user = unique("expiring");
  let calls = 0;
  const client = connect(WS, {
    rooms: [unique("r")],
    reconnect: fast,
    getToken: async () => {
      calls += 1;
      if (calls === 1) return token(user, { expiresIn: 2 });
      if (calls === 2) {
        await sleep(2500); // the refresh comes after the expiry
        return null;
      }
      return token(user);
    },
  });
  t.after(() => client.close());
  const events = record(client);
  await client.ready;
  await until(() => events.state.some((s) => s.code === 1008), "the 1008 close", 6000);
  await until(() => client.state === "connected", "the reconnect");
  assert.equal(calls, 3);
});

test("without getToken a 1008 close ends unauthorized", async (t) => {
  const client = connect(WS, { token: token(unique("short"), { expiresIn: 1 }), reconnect: fast });
  t.after(() => client.close());
  const events = record(client);
  await client.ready;
  await until(() => client.state === "unauthorized", "unauthorized", 5000);
  assert.equal(events.state.at(-1).code, 1008);
  await sleep(500);
  assert.equal(events.state.filter((s) => s.state === "connecting").length, 0);
});

test("the token is refreshed before it expires", async (t) => {
  const user = unique("refreshed");
  let calls = 0;
  const client = connect(WS, {
    rooms: [unique("r")],
    getToken: () => {
      calls += 1;
      return token(user, { expiresIn: calls === 1 ? 3 : 600 });
    },
  });
  t.after(() => client.close());
  const events = record(client);
  await client.ready;
  await sleep(4000); // past the first token's expiry
  assert.equal(calls, 2, "asked once for the refresh");
  assert.equal(client.state, "connected");
  assert.deepEqual(events.state.filter((s) => s.state !== "connected"), [], "no disconnect");
  assert.deepEqual(events.error, []);
});

test("the served client.js and client.d.ts are the files", async () => {
  assert.equal(await (await fetch(`${HTTP}/client.js`)).text(), CLIENT_SOURCE);
  assert.equal(await (await fetch(`${HTTP}/client.d.ts`)).text(), TYPES_SOURCE);
});
