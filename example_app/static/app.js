// The example chat page, on the sanic-chat JavaScript client (/client.js).
//
// The client owns the connection: reconnects, re-joins with `since`,
// delivers each message once and in order, resends unacknowledged sends.
// This page owns what people see: conversations, unread counts, typing,
// pending sends, the session (sign-in, reload, sign-out) and the status.
import { connect } from "/client.js";  // the blueprint's CHAT_CLIENT_PATH

// A view is a room's name or "@" + a user id for direct messages with that
// user ("@" is not allowed in room names). Direct messages all live in the
// user's inbox, a room of its own the server names in `welcome`; the page
// sorts them into one conversation per other user.
const state = {
  client: null, session: null, name: "", me: null, everOnline: false,
  rooms: new Map(), inbox: null, inboxRoom: null, dms: new Map(), current: null, lastRoom: null,
  editing: null, typing: new Map(), typingSent: new Map(), readTimer: null,
  awaiting: new Map(),  // message id -> pending item whose send was acknowledged
};
// The server forwards one typing per user and room per 2 s and drops the
// rest: a little more than that keeps network jitter from losing one.
const TYPING_EVERY = 2500;
const TYPING_SHOWN = 5000;
const READ_DELAY = 500;     // read receipts: at most one per room per 0.5 s
const KEPT = 500;           // items kept per conversation
const $ = (id) => document.getElementById(id);
const newRoom = () => ({ lastId: null, items: [], byId: new Map(), unread: 0, lastRead: null, pendingRead: null, users: [] });
const roomState = (room) => {
  if (room === state.inbox) return state.inboxRoom;
  if (!state.rooms.has(room)) state.rooms.set(room, newRoom());
  return state.rooms.get(room);
};
const isDm = (view) => typeof view === "string" && view.startsWith("@");
const mine = (user) => !!(state.me && user && user.id === state.me.id);
// The other person of a direct message, whoever sent it.
const peerOf = (m) => mine(m.user) ? m.to : m.user.id;
const viewOf = (m) => m.room === state.inbox ? `@${peerOf(m)}` : m.room;
const conv = (view) => isDm(view) ? state.dms.get(view.slice(1)) : state.rooms.get(view);
const roomOfView = (view) => isDm(view) ? state.inboxRoom : state.rooms.get(view);
function dmState(id, user) {
  if (!state.dms.has(id)) state.dms.set(id, { user: user || knownUser(id), items: [], unread: 0 });
  const dm = state.dms.get(id);
  if (user && dm.user.name === dm.user.id) dm.user = user;
  return dm;
}
function knownUser(id) {
  for (const r of state.rooms.values()) for (const u of r.users) if (u.id === id) return u;
  return { id, name: id };
}

// Guests choose any name, even a signed-in user's: their server-made id
// (guest-...) is what tells them apart, so the page shows it as a badge.
const isGuest = (user) => user.id.startsWith("guest-");
const label = (user) => isGuest(user) ? `${user.name} (guest)` : user.name;
function guestBadge() {
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = "guest";
  badge.title = "Not signed in: anyone can pick this name";
  return badge;
}

// Rooms are remembered per name in this browser, so that a reload joins
// them again and shows what arrived meanwhile as unread counts.
const savedRooms = () => `sanic-chat:rooms:${state.name}`;
function saveRooms() {
  try { localStorage.setItem(savedRooms(), JSON.stringify([...state.rooms.keys()])); } catch { /* private mode */ }
}
function loadRooms() {
  let rooms = [];
  try { rooms = JSON.parse(localStorage.getItem(savedRooms())) || []; } catch { /* private mode */ }
  return rooms.filter((room) => typeof room === "string" && /^[A-Za-z0-9_.:-]{1,64}$/.test(room));
}

function notice(text) { $("notice").textContent = text || ""; }
const problem = (err) => err && err.code ? `${err.code}: ${err.message}` : String(err && err.message || err);

// ---- Session: the demo login's HttpOnly cookie, traded for tokens ----

// POST /login or GET /session: {user, token, expires_at}, or an Error
// (status 401: not signed in; a TypeError: the server is unreachable).
async function session(path, body) {
  const init = body === undefined ? { cache: "no-store" } : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const err = new Error(answer.error ? answer.error.message : `${path} answered ${response.status}`);
    err.status = response.status;
    throw err;
  }
  state.session = answer;
  return answer;
}

// Asked by the client before every (re)connection, before the token
// expires and after a refusal: the cookie buys a fresh token. When the
// server cannot be reached, the last token lets the client keep trying.
let firstToken = null;
async function getToken() {
  if (firstToken) { const token = firstToken; firstToken = null; return token; }
  if (!navigator.onLine) return state.session ? state.session.token : null;
  try {
    return (await session("/session")).token;
  } catch (err) {
    if (err.status === 401) return null;
    return state.session ? state.session.token : null;
  }
}

async function signOut() {
  // JSON only, as /login: no other site's form can sign the visitor out.
  const init = { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" };
  try { await fetch("/logout", init); } catch { /* the cookie expires anyway */ }
  if (state.client) state.client.close();
  location.reload();
}

// ---- Connection state, shown in the header ----

let refusalCheck = 0;
function onState(e) {
  const client = state.client;
  if (e.state === "connected") {
    state.everOnline = true;
    renderNav();
    notice("");
  } else if (e.state === "disconnected") {
    if (e.code === 1008) notice(`The server closed the connection: ${e.reason || "policy violation"}.`);
    else if (e.code === 1013) notice("You fell too far behind; reconnecting to catch up.");
    else if (e.code === 1001 || e.code === 1012) notice("The server is restarting; reconnecting.");
    else if (e.previous === "connecting") whyRefused(++refusalCheck);
    else notice("Connection lost; reconnecting.");
  } else if (e.state === "unauthorized") {
    notice("Your session has ended: sign in again.");
    showLogin();
  } else if (e.state === "refused") {
    notice(`The chat server refused the connection${e.reason ? `: ${e.reason}` : ""}.`);
  }
  // Pending sends say whether they wait for the connection.
  for (const c of [...state.rooms.values(), ...state.dms.values()]) {
    for (const item of c.items) if (item.kind === "pending") redraw(item);
  }
  renderStatus();
}

// A WebSocket that fails to open says nothing about why: ask the server.
async function whyRefused(check) {
  let text;
  if (!navigator.onLine) text = "No network; reconnecting when it is back.";
  else {
    try {
      await fetch("/health", { cache: "no-store" });
      text = "The chat server refused the connection (not signed in, or not allowed from this page); retrying.";
    } catch {
      text = "Cannot reach the chat server; retrying.";
    }
  }
  if (check === refusalCheck && state.client && state.client.state !== "connected") notice(text);
}

// online, connecting (first time), offline (lost, reconnecting),
// unauthorized or refused; with the number of sends not yet acknowledged.
function renderStatus() {
  const client = state.client;
  const s = client ? client.state : "closed";
  let kind, text;
  if (s === "connected") [kind, text] = ["online", "online"];
  else if (s === "unauthorized") [kind, text] = ["unauthorized", "signed out"];
  else if (s === "refused") [kind, text] = ["offline", "refused"];
  else if (s === "closed") [kind, text] = ["idle", "not connected"];
  else if (!state.everOnline) [kind, text] = ["connecting", "connecting…"];
  else [kind, text] = ["offline", navigator.onLine ? "offline, reconnecting…" : "offline: no network"];
  if (client && client.pending) text += ` (${client.pending} unsent)`;
  $("status").dataset.state = kind;
  $("status").textContent = text;
}
window.addEventListener("online", renderStatus);
window.addEventListener("offline", renderStatus);

// Every welcome comes before any other event of its connection: who this
// is, and the inbox (the client joins it).
function welcome({ user, inbox }) {
  state.me = user;
  $("me").textContent = `as ${user.name}`;
  $("logout").title = `Sign out ${user.name}`;
  if ((inbox || null) !== state.inbox) {  // another user, or no DMs
    state.inbox = inbox || null;
    state.inboxRoom = newRoom();
    state.dms.clear();
    if (isDm(state.current)) state.current = null;
  }
}

// ---- Events from the client ----

function listen(client) {
  const on = client.on.bind(client);
  on("welcome", welcome);
  on("state", onState);
  on("joined", (f) => {
    if (mine(f.user)) ownJoined(f);
    else if (f.room !== state.inbox) addNotice(f.room, `${label(f.user)} joined`);
  });
  on("left", (f) => {
    if (!mine(f.user) && f.room !== state.inbox) addNotice(f.room, `${label(f.user)} left`);
  });
  on("presence", (e) => {
    if (e.room === state.inbox || !state.rooms.has(e.room)) return;
    state.rooms.get(e.room).users = e.members;
    if (e.room === state.current || (isDm(state.current) && e.room === state.lastRoom)) renderPresence();
  });
  on("message", (m) => addMessage(m, true));
  on("edited", changed);
  on("deleted", changed);
  on("typing", typing);
  on("read", readElsewhere);
  on("error", (err) => notice(problem(err)));
}

function ownJoined(f) {
  const inbox = f.room === state.inbox;
  const r = roomState(f.room);
  if ("last_read" in f && (f.last_read || !r.lastRead)) r.lastRead = f.last_read;
  // A recovery replays what was missed as live messages, which count
  // themselves; otherwise the server's count is the truth.
  if (!inbox && f.recovered !== true && typeof f.unread === "number") r.unread = f.unread;
  if (f.recovered === false && !inbox) addNotice(f.room, "Some messages could not be recovered; showing recent history.");
  if (f.recovered === false || (f.recovered !== true && r.byId.size === 0)) loadHistory(f.room);
  if (inbox) return;
  saveRooms();
  if (!state.current || !conv(state.current)) state.current = f.room;
  if (f.room === state.current) show(f.room);
  else renderNav();
}

async function loadHistory(room) {
  let messages;
  try {
    messages = await state.client.history(room);
  } catch (err) {
    notice(`Could not load the history of ${room}: ${problem(err)}`);
    return;
  }
  for (const m of messages) addMessage(m, false);
  if (room === state.inbox) countDmUnread(messages);
}

// Direct messages have one read position (the inbox's): every message from
// another user after it is unread, in the conversation with that user.
function countDmUnread(messages) {
  const after = messages.findIndex((m) => m.id === state.inboxRoom.lastRead);
  for (const dm of state.dms.values()) dm.unread = 0;
  for (const m of messages.slice(after + 1)) {
    if (!mine(m.user) && !m.deleted) dmState(m.user.id, m.user).unread += 1;
  }
  if (isDm(state.current)) markRead();
  renderNav();
}

function keep(c, item) {
  c.items.push(item);
  if (c.items.length > KEPT) {
    const old = c.items.shift();
    if (old.kind === "message") roomState(old.m.room).byId.delete(old.m.id);
  }
}

function addMessage(m, live) {
  const r = roomState(m.room);
  if (!r) return;
  const known = r.byId.get(m.id);
  if (known) {  // history may overlap what is shown; it may also be newer
    if (m.deleted || m.edited_ts !== known.m.edited_ts) changed({ ...m, type: m.deleted ? "deleted" : "edited" });
    return;
  }
  const view = viewOf(m);
  const newDm = isDm(view) && !state.dms.has(view.slice(1));
  const c = isDm(view) ? dmState(view.slice(1), mine(m.user) ? null : m.user) : r;
  r.lastId = m.id;
  if (m.user) stopTyping(view, m.user.id);
  // One's own message: the pending item it answers becomes the message.
  const pending = mine(m.user) && (state.awaiting.get(m.id) ||
    c.items.find((item) => item.kind === "pending" && item.status === "sending" && item.text === m.text));
  if (pending) {
    state.awaiting.delete(m.id);
    Object.assign(pending, { kind: "message", m });
    r.byId.set(m.id, pending);
    if (pending.li) pending.li.replaceWith(renderItem(pending));
    if (view === state.current) markRead();
    renderStatus();
    return;
  }
  const item = { kind: "message", m };
  r.byId.set(m.id, item);
  keep(c, item);
  if (view === state.current) { appendItem(item); markRead(); }
  else if (live && !mine(m.user) && !m.deleted) { c.unread += 1; renderNav(); }
  else if (newDm) renderNav();
}

function addNotice(room, text) {
  const r = roomState(room);
  r.items.push({ kind: "notice", text });
  if (room === state.current) appendItem(r.items[r.items.length - 1]);
}

// `edited` and `deleted` events, live or replayed, and history entries
// that say a message was changed: the message is redrawn where it is.
function changed(f) {
  const r = roomState(f.room);
  const item = r && r.byId.get(f.id);
  if (!item) return;  // older than anything the page holds
  if (f.type === "deleted") { item.m.deleted = true; delete item.m.text; }
  else { item.m.text = f.text; item.m.edited_ts = f.edited_ts; }
  if (state.editing && state.editing.id === f.id && f.type === "deleted") stopEditing();
  if (item.li) item.li.replaceWith(renderItem(item));
}

// ---- Sending: a message shows as pending until the server has it ----

function sendText(view, text) {
  const c = conv(view);
  if (!c) return;
  const item = { kind: "pending", view, text, status: "sending", error: "" };
  keep(c, item);
  if (view === state.current) appendItem(item);
  attempt(item);
}

async function attempt(item) {
  const client = state.client;
  const to = isDm(item.view) ? item.view.slice(1) : null;
  item.status = "sending";
  redraw(item);
  // A retry reuses the failed send's ref: if the first went through (its
  // ack was lost), the server answers with its id instead of a copy.
  const options = item.ref ? { ref: item.ref } : {};
  const sent = to ? client.sendTo(to, item.text, options) : client.send(item.view, item.text, options);
  renderStatus();  // counts it among the unsent
  try {
    const id = await sent;
    if (item.kind === "pending") {
      // Acknowledged before its echo: the echo will take its place.
      const known = roomOfView(item.view)?.byId.get(id);
      if (known) discard(item);
      else { item.status = "sent"; state.awaiting.set(id, item); redraw(item); }
    }
  } catch (err) {
    if (item.kind !== "pending") return;
    item.status = "failed";
    item.error = problem(err);
    if (err.ref) item.ref = err.ref;
    redraw(item);
  }
  renderStatus();
}

function discard(item) {
  const c = conv(item.view);
  if (c) c.items = c.items.filter((other) => other !== item);
  if (item.li) item.li.remove();
  item.li = null;
  renderStatus();
}

function redraw(item) { if (item.li) item.li.replaceWith(renderItem(item)); }

// Edits and deletions answer with an error or nothing: errors are shown.
function act(promise) { promise.catch((err) => notice(problem(err))); }

// ---- Rendering ----

function appendItem(item) {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(renderItem(item));
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function renderItem(item) {
  const li = document.createElement("li");
  item.li = li;
  if (item.kind === "notice") {
    li.className = "notice";
    li.textContent = item.text;
    return li;
  }
  if (item.kind === "pending") return renderPending(li, item);
  const m = item.m;
  const user = m.user || { id: "", name: "" };
  if (mine(user)) li.classList.add("mine");
  if (m.deleted) li.classList.add("gone");
  li.dataset.id = m.id;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.append(span("who", user.name));
  if (user.id && isGuest(user)) meta.append(guestBadge());
  if (m.ts) {
    const time = document.createElement("time");
    const when = new Date(m.ts);
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    meta.append(time);
  }
  if (m.edited_ts && !m.deleted) {
    const edited = span("edited", "(edited)");
    edited.title = new Date(m.edited_ts).toLocaleString();
    meta.append(edited);
  }
  // Own room messages can be changed (direct messages cannot).
  if (mine(user) && !m.deleted && m.room !== state.inbox) {
    meta.append(actions(
      button("edit", "Edit", () => startEditing(m)),
      button("delete", "Delete", () => act(state.client.delete(m.room, m.id))),
    ));
  }
  li.append(meta, span("text", m.deleted ? "message deleted" : m.text, "div"));  // always text, never HTML
  return li;
}

// A send not yet acknowledged, or refused: the error, Retry and Discard.
function renderPending(li, item) {
  li.className = `mine pending${item.status === "failed" ? " failed" : ""}`;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.append(span("who", state.me ? state.me.name : state.name));
  if (item.status === "failed") {
    meta.append(span("problem", `Not sent: ${item.error}`));
    meta.append(actions(
      button("retry", "Retry", () => attempt(item)),
      button("discard", "Discard", () => discard(item)),
    ));
  } else {
    const online = state.client && state.client.state === "connected";
    meta.append(span("sending", online || item.status === "sent" ? "sending…" : "waiting for the connection…"));
  }
  li.append(meta, span("text", item.text, "div"));
  return li;
}

function span(className, text, tag = "span") {
  const el = document.createElement(tag);
  el.className = className;
  el.textContent = text;
  return el;
}

function button(className, text, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.onclick = onclick;
  return b;
}

function actions(...buttons) {
  const el = document.createElement("span");
  el.className = "actions";
  el.append(...buttons);
  return el;
}

function startEditing(m) {
  state.editing = { room: m.room, id: m.id };
  $("editing").hidden = false;
  $("text").value = m.text;
  $("text").focus();
}

function stopEditing() {
  if (!state.editing) return;
  state.editing = null;
  $("editing").hidden = true;
  $("text").value = "";
}

// Typing: sent at most every 2.5 s while the user types, shown for 5 s or
// until that person's next message; never stored, so nothing to recover.
function typing(f) {
  if (mine(f.user)) return;
  const view = f.room === state.inbox ? `@${f.user.id}` : f.room;
  if (!state.typing.has(view)) state.typing.set(view, new Map());
  const people = state.typing.get(view);
  clearTimeout(people.get(f.user.id)?.timer);
  const timer = setTimeout(() => stopTyping(view, f.user.id), TYPING_SHOWN);
  people.set(f.user.id, { user: f.user, timer });
  if (view === state.current) renderTyping();
}

function stopTyping(view, userId) {
  const people = state.typing.get(view);
  if (!people || !people.has(userId)) return;
  clearTimeout(people.get(userId).timer);
  people.delete(userId);
  if (view === state.current) renderTyping();
}

function renderTyping() {
  const names = [...(state.typing.get(state.current) || new Map()).values()].map((p) => label(p.user));
  $("typing").textContent =
    names.length === 0 ? "" :
    names.length === 1 ? `${names[0]} is typing...` :
    names.length === 2 ? `${names[0]} and ${names[1]} are typing...` :
    "Several people are typing...";
}

// Read receipts: the newest message shown in the view on screen is read.
// Sent after a short pause, so a busy room costs a frame per half second.
function markRead() {
  const c = conv(state.current);
  if (!c || document.hidden) return;
  if (c.unread) { c.unread = 0; renderNav(); }
  const last = c.items.findLast((item) => item.kind === "message");
  if (!last) return;
  const r = roomState(last.m.room);
  if (r.lastRead === last.m.id) return;
  r.pendingRead = last.m.id;
  if (!state.readTimer) state.readTimer = setTimeout(sendReads, READ_DELAY);
}

function sendReads() {
  state.readTimer = null;
  for (const [room, r] of [...state.rooms, [state.inbox, state.inboxRoom]]) {
    if (!r || !r.pendingRead) continue;
    // A mark for a message the server no longer holds (its history lost
    // in a restart) is refused with not_found: nothing to act on.
    state.client.markRead(room, r.pendingRead).catch((err) => {
      if (!["not_found", "timeout", "closed"].includes(err.code)) notice(problem(err));
    });
    r.lastRead = r.pendingRead;
    r.pendingRead = null;
  }
}
document.addEventListener("visibilitychange", markRead);

// The user read up to `id` in another tab (other people's receipts are
// not shown on this page).
function readElsewhere(f) {
  if (!mine(f.user)) return;
  const r = roomState(f.room);
  r.lastRead = f.id;
  if (f.room === state.inbox) {
    for (const dm of state.dms.values()) {
      if (dm.items.findLast((item) => item.kind === "message")?.m.id === f.id) dm.unread = 0;
    }
  } else if (r.lastId === f.id) r.unread = 0;
  renderNav();
}

function show(view) {
  if (view !== state.current) stopEditing();
  state.current = view;
  if (view && !isDm(view)) state.lastRoom = view;
  closePanels();
  renderNav();
  renderMessages();
  renderPresence();
  renderTyping();
  markRead();
}

function renderNav() {
  const rooms = $("rooms");
  rooms.replaceChildren();
  for (const [room, r] of state.rooms) {
    const li = document.createElement("li");
    const leave = button("leave", "×", () => leaveRoom(room));
    leave.title = `Leave ${room}`;
    leave.setAttribute("aria-label", `Leave ${room}`);
    li.append(navButton("room", room, `# ${room}`, r.unread), leave);
    rooms.append(li);
  }
  const dms = $("dms");
  dms.replaceChildren();
  for (const [id, dm] of state.dms) {
    const li = document.createElement("li");
    li.append(navButton("dm", `@${id}`, label(dm.user), dm.unread));
    dms.append(li);
  }
  // Closed drawers still tell of unread messages.
  const unread = [...state.rooms.values(), ...state.dms.values()].reduce((n, c) => n + c.unread, 0);
  $("rooms-toggle").textContent = unread ? `Rooms (${unread})` : "Rooms";
}

function navButton(kind, view, text, unread) {
  const b = document.createElement("button");
  b.className = kind;
  b.dataset.view = view;
  b.setAttribute("aria-current", String(view === state.current));
  const count = span("unread", unread ? String(unread) : "");
  count.title = unread ? `${unread} unread` : "";
  b.append(span("name", text), count);
  b.onclick = () => show(view);
  return b;
}

function leaveRoom(room) {
  act(state.client.leave(room));
  state.rooms.delete(room);
  saveRooms();
  show(state.current === room ? state.rooms.keys().next().value || null : state.current);
}

function renderMessages() {
  $("messages").replaceChildren();
  const c = state.current && conv(state.current);
  $("title").textContent = !c ? "" : isDm(state.current) ? `Direct messages with ${label(c.user)}` : `# ${state.current}`;
  $("text").placeholder = !c ? "Write a message" : isDm(state.current) ? `Message ${c.user.name}` : `Message #${state.current}`;
  if (c) for (const item of c.items) appendItem(item);
}

// "Here now" lists the room on screen (in a direct message view: the last
// room shown); a click on someone else's name opens a direct message.
function renderPresence() {
  const room = isDm(state.current) ? state.lastRoom : state.current;
  const r = room && state.rooms.get(room);
  if (r && state.client && r.users.length === 0) r.users = state.client.members(room);
  $("presence-title").textContent = room ? `Here now in #${room}` : "Here now";
  const ul = $("presence");
  ul.replaceChildren();
  $("dm-hint").hidden = !state.inbox;
  for (const u of r ? r.users : []) {
    const li = document.createElement("li");
    const who = span("who", u.name);  // always text, never HTML
    if (state.inbox && !mine(u)) {
      const b = button("person", "", () => { dmState(u.id, u); show(`@${u.id}`); $("text").focus(); });
      b.title = `Send ${u.name} a direct message`;
      b.append(who);
      li.append(b);
    } else li.append(who);
    if (isGuest(u)) li.append(guestBadge());
    ul.append(li);
  }
}

// ---- Narrow screens: rooms and people are drawers ----

function togglePanel(which) {
  const panel = $(`${which}-panel`);
  const open = !panel.classList.contains("open");
  closePanels();
  if (!open) return;
  panel.classList.add("open");
  $(`${which}-toggle`).setAttribute("aria-expanded", "true");
  $("scrim").hidden = false;
  panel.querySelector("button, input")?.focus();
}

function closePanels() {
  for (const which of ["rooms", "people"]) {
    $(`${which}-panel`).classList.remove("open");
    $(`${which}-toggle`).setAttribute("aria-expanded", "false");
  }
  $("scrim").hidden = true;
}

$("rooms-toggle").onclick = () => togglePanel("rooms");
$("people-toggle").onclick = () => togglePanel("people");
$("scrim").onclick = closePanels;
for (const close of document.querySelectorAll("aside .close")) close.onclick = closePanels;
document.addEventListener("keydown", (e) => { if (e.key === "Escape") closePanels(); });

// ---- Starting: a session from the cookie, or the sign-in form ----

function showLogin() {
  $("app").hidden = true;
  for (const id of ["rooms-toggle", "people-toggle", "logout"]) $(id).hidden = true;
  $("login").hidden = false;
  $("name").focus();
}

function start(signedIn) {
  if (state.client) state.client.close();  // its session ended
  Object.assign(state, {
    name: signedIn.user.name, me: signedIn.user, everOnline: false, rooms: new Map(),
    inbox: null, inboxRoom: null, dms: new Map(), current: null, awaiting: new Map(),
  });
  const saved = loadRooms();
  for (const room of saved) roomState(room);
  state.current = saved[0] || null;  // shown once joined
  firstToken = signedIn.token;
  $("login").hidden = true;
  $("app").hidden = false;
  for (const id of ["rooms-toggle", "people-toggle", "logout"]) $(id).hidden = false;
  const client = connect("/ws", {
    getToken,
    rooms: saved,
    reconnect: { maxDelay: 5000 },  // one server, one page: come back soon
  });
  state.client = client;
  window.chat = client;  // for the browser console
  listen(client);
  client.ready.catch(() => { /* shown by the state event */ });
  renderStatus();
  $("text").focus();
}

$("login").onsubmit = async (e) => {
  e.preventDefault();
  const name = $("name").value.trim();
  if (!name) return;
  try {
    start(await session("/login", { name }));
    notice("");
  } catch (err) {
    notice(err instanceof TypeError ? "Cannot reach the chat server." : err.message);
  }
};

$("send-form").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value;
  const view = state.current;
  if (!text.trim() || !view || !state.client) return;
  if (state.editing) act(state.client.edit(state.editing.room, state.editing.id, text));
  else sendText(view, text);
  stopEditing();
  $("text").value = "";
};

$("text").addEventListener("input", () => {
  const view = state.current;
  if (!view || state.editing || !$("text").value.trim() || state.client?.state !== "connected") return;
  const now = Date.now();
  if (now - (state.typingSent.get(view) || 0) < TYPING_EVERY) return;
  state.typingSent.set(view, now);
  if (isDm(view)) state.client.typingTo(view.slice(1));
  else state.client.typing(view);
});

$("text").addEventListener("keydown", (e) => { if (e.key === "Escape") stopEditing(); });
$("cancel-edit").onclick = stopEditing;
$("logout").onclick = signOut;

$("join-form").onsubmit = (e) => {
  e.preventDefault();
  const room = $("new-room").value.trim();
  if (!room || !state.client) return;
  stopEditing();
  state.current = room;  // shown once the server confirms with `joined`
  act(state.client.join(room));
  $("new-room").value = "";
};

// A reload: the HttpOnly cookie may still hold a session.
try {
  start(await session("/session"));
} catch (err) {
  if (err.status !== 401) notice(err instanceof TypeError ? "Cannot reach the chat server." : err.message);
  showLogin();
}
