// Types of the sanic-chat JavaScript client (client.js). The wire frames
// are those of docs/protocol.md; the block between BEGIN FRAMES and
// END FRAMES is generated: python -m sanic_chat.asyncapi --dts

// BEGIN FRAMES
/** The first frame of every connection: who you are, your rooms. */
export interface WelcomeFrame {
  type: "welcome";
  protocol: 1;
  user: User;
  rooms: string[];
  /** The connection's inbox */
  inbox?: string;
}

/** A user's public part, as frames carry it. */
export interface User {
  /** Stable user id; guests' start with guest- */
  id: string;
  /** Display name */
  name: string;
}

/** A join's answer, or the notice that another member joined. */
export interface JoinedFrame {
  type: "joined";
  /** A room name, or the connection's own inbox */
  room: string;
  user: User;
  /** After a join with since: it was in history */
  recovered?: boolean;
  /** Your read mark in a join reply */
  last_read?: string | null;
  /** Stored messages after last_read */
  unread?: number;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** A leave's answer, or the notice that another member left. */
export interface LeftFrame {
  type: "left";
  /** A room name, or the connection's own inbox */
  room: string;
  user: User;
  /** The server took you out of the room */
  reason?: "forbidden";
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** A chat message (`to`: a direct message; `deleted`: no text). */
export interface MessageFrame {
  type: "message";
  /** A room name, or the connection's own inbox */
  room: string;
  /** A direct message's recipient */
  to?: string;
  user: User;
  /** Message text: not only whitespace, no lone surrogate; delivered verbatim, render it as text, never as HTML */
  text?: string;
  /** Server time, milliseconds since the epoch */
  ts: number;
  /** Any JSON object of at most 2048 bytes (compact, UTF-8), passed through unchanged */
  meta?: Record<string, unknown>;
  /** Server time, milliseconds since the epoch */
  edited_ts?: number;
  deleted?: true;
  /** Opaque, unique within the room: compare for equality only */
  id: string;
}

/** Message `id` now reads `text`; `user` edited it. */
export interface EditedFrame {
  type: "edited";
  /** A room name */
  room: string;
  /** Opaque, unique within the room: compare for equality only */
  id: string;
  /** Message text: not only whitespace, no lone surrogate; delivered verbatim, render it as text, never as HTML */
  text: string;
  user: User;
  /** Server time, milliseconds since the epoch */
  edited_ts: number;
}

/** Message `id` was deleted by `user` at `ts`. */
export interface DeletedFrame {
  type: "deleted";
  /** A room name */
  room: string;
  /** Opaque, unique within the room: compare for equality only */
  id: string;
  user: User;
  /** Server time, milliseconds since the epoch */
  ts: number;
}

/** A request with a `ref` succeeded; `id`: the message's id. */
export interface AckFrame {
  type: "ack";
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref: string;
  /** Opaque, unique within the room: compare for equality only */
  id?: string;
  /** A room name, or the connection's own inbox */
  room?: string;
}

/** The answer to `history`: stored messages, oldest first. */
export interface HistoryFrame {
  type: "history";
  /** A room name, or the connection's own inbox */
  room: string;
  messages: MessageFrame[];
  truncated?: true;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** The answer to `presence`: who is in the room, and how many. */
export interface PresenceFrame {
  type: "presence";
  /** A room name */
  room: string;
  users: User[];
  /** Distinct users in the room */
  count: number;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** `user` is typing in `room` (ephemeral). */
export interface TypingFrame {
  type: "typing";
  /** A room name, or the connection's own inbox */
  room: string;
  user: User;
}

/** `user` has read `room` up to message `id` (ephemeral). */
export interface ReadFrame {
  type: "read";
  /** A room name, or the connection's own inbox */
  room: string;
  user: User;
  /** Opaque, unique within the room: compare for equality only */
  id: string;
}

/** The answer to `receipts`: the last id read, by user id. */
export interface ReceiptsFrame {
  type: "receipts";
  /** A room name, or the connection's own inbox */
  room: string;
  read: Record<string, string>;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** The session now expires at `expires_at` (epoch seconds). */
export interface RefreshedFrame {
  type: "refreshed";
  expires_at: number | null;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** The answer to `ping`. */
export interface PongFrame {
  type: "pong";
}

/** `skipped` frames of the room were dropped: you read too slowly. */
export interface LaggedFrame {
  type: "lagged";
  /** A room name, or the connection's own inbox */
  room: string;
  skipped: number;
}

/** Events of the room may have been missed: re-sync with `since`. */
export interface ResyncFrame {
  type: "resync";
  /** A room name, or the connection's own inbox */
  room: string;
}

/** A request was refused; the connection stays open. */
export interface ErrorFrame {
  type: "error";
  /** Stable: code against it */
  code: "bad_request" | "too_large" | "not_joined" | "too_many_rooms" | "forbidden" | "not_found" | "rate_limited" | "unavailable" | "internal_error";
  /** For humans */
  message: string;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
  /** A room name, or the connection's own inbox */
  room?: string;
}

/** Join a room; with `since`, replay what came after that id. */
export interface JoinRequest {
  type: "join";
  /** A room name, or the connection's own inbox */
  room: string;
  /** Opaque, unique within the room: compare for equality only */
  since?: string;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** Leave a room. */
export interface LeaveRequest {
  type: "leave";
  /** A room name */
  room: string;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** Send a message to a room you are in. */
export interface MessageRequest {
  type: "message";
  /** A room name */
  room: string;
  /** Message text: not only whitespace, no lone surrogate; delivered verbatim, render it as text, never as HTML */
  text: string;
  /** Any JSON object of at most 2048 bytes (compact, UTF-8), passed through unchanged */
  meta?: Record<string, unknown>;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** Send a direct message to a user (never with `room`). */
export interface DirectMessageRequest {
  type: "message";
  /** A user id */
  to: string;
  /** Message text: not only whitespace, no lone surrogate; delivered verbatim, render it as text, never as HTML */
  text: string;
  /** Any JSON object of at most 2048 bytes (compact, UTF-8), passed through unchanged */
  meta?: Record<string, unknown>;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** Replace the text of a message of a room. */
export interface EditRequest {
  type: "edit";
  /** A room name */
  room: string;
  /** Opaque, unique within the room: compare for equality only */
  id: string;
  /** Message text: not only whitespace, no lone surrogate; delivered verbatim, render it as text, never as HTML */
  text: string;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** Delete a message of a room. */
export interface DeleteRequest {
  type: "delete";
  /** A room name */
  room: string;
  /** Opaque, unique within the room: compare for equality only */
  id: string;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** Ask for the newest `limit` stored messages before `before`. */
export interface HistoryRequest {
  type: "history";
  /** A room name, or the connection's own inbox */
  room: string;
  limit?: number;
  /** Opaque, unique within the room: compare for equality only */
  before?: string;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** Ask who is in a room. */
export interface PresenceRequest {
  type: "presence";
  /** A room name */
  room: string;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** Extend the session with a new token for the same user. */
export interface RefreshRequest {
  type: "refresh";
  token: string;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** An application-level heartbeat; answered with `pong`. */
export interface PingRequest {
  type: "ping";
}

/** Tell the room's other members that you are typing. */
export interface TypingRequest {
  type: "typing";
  /** A room name, or the connection's own inbox */
  room: string;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** Tell a user, in their inbox, that you are typing to them. */
export interface DirectTypingRequest {
  type: "typing";
  /** A user id */
  to: string;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** Mark a room read up to message `id`. */
export interface ReadRequest {
  type: "read";
  /** A room name, or the connection's own inbox */
  room: string;
  /** Opaque, unique within the room: compare for equality only */
  id: string;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

/** Ask for every member's read mark in a room. */
export interface ReceiptsRequest {
  type: "receipts";
  /** A room name, or the connection's own inbox */
  room: string;
  /** Chosen by the client; echoed in the ack and in the error of this request */
  ref?: string;
}

export type ServerFrame =
  | WelcomeFrame
  | JoinedFrame
  | LeftFrame
  | MessageFrame
  | EditedFrame
  | DeletedFrame
  | AckFrame
  | HistoryFrame
  | PresenceFrame
  | TypingFrame
  | ReadFrame
  | ReceiptsFrame
  | RefreshedFrame
  | PongFrame
  | LaggedFrame
  | ResyncFrame
  | ErrorFrame;
export type ClientFrame =
  | JoinRequest
  | LeaveRequest
  | MessageRequest
  | DirectMessageRequest
  | EditRequest
  | DeleteRequest
  | HistoryRequest
  | PresenceRequest
  | RefreshRequest
  | PingRequest
  | TypingRequest
  | DirectTypingRequest
  | ReadRequest
  | ReceiptsRequest;
// END FRAMES

export type State =
  | "connecting"
  | "connected"
  | "disconnected"
  | "unauthorized"
  | "refused"
  | "closed";

export interface ReconnectOptions {
  /** First delay, ms (500). */
  initialDelay?: number;
  /** Longest delay, ms (30000). */
  maxDelay?: number;
  /** Growth per attempt (2). */
  factor?: number;
  /** Share of each delay taken off at random, 0..1 (0.5). */
  jitter?: number;
}

export interface ConnectOptions {
  /** Sent as the "bearer.<token>" subprotocol, never in the URL. */
  token?: string;
  /** Asked before every (re)connect, before expiry (refresh frame), and
   * once after a refused identity; given up after `heartbeat` ms. */
  getToken?: () => string | null | Promise<string | null>;
  /** Joined on connect, re-joined with since on every reconnect. */
  rooms?: string[];
  /** Guest display name (?name=). */
  name?: string;
  reconnect?: ReconnectOptions;
  /** Requests (sends, reads, history...) held while offline or
   * unanswered (100). */
  maxPending?: number;
  /** Their UTF-8 bytes (262144); over either bound a request rejects at
   * once with code "queue_full". */
  maxPendingBytes?: number;
  /** ms a request may wait for its answer across reconnects (30000);
   * then it rejects with code "timeout" (a send may still have been
   * published: resend it with `{ref: error.ref}`, it is published once). */
  sendTimeout?: number;
  /** ms between application pings (30000; 0: none); a socket silent
   * for a whole period is closed and reconnected. */
  heartbeat?: number;
  /** The WebSocket constructor (default: globalThis.WebSocket). */
  WebSocket?: typeof WebSocket;
}

export class ChatError extends Error {
  /** The error frame's code, or the client's own: "queue_full",
   * "timeout", "unauthorized", "refused", "closed", "token" (getToken
   * threw, or gave no answer within `heartbeat` ms), "bad_frame" (a
   * server frame the client could not read, reported and skipped). */
  code: string;
  frame?: ErrorFrame;
  /** The ref of the request that failed; a send retried with it is
   * published at most once. */
  ref?: string;
}

export interface StateEvent {
  state: State;
  previous: State;
  code?: number;
  reason?: string;
}

export interface WelcomeEvent {
  user: User;
  /** Your inbox (direct messages), if the server gives you one. */
  inbox: string | null;
  /** The rooms the server joins on this connect. */
  rooms: string[];
}

export interface ChatEvents {
  /** Every welcome: the first connect and each reconnect, before any
   * other event of that connection. */
  welcome: WelcomeEvent;
  /** Each id once, in order, per room (DMs: room is the inbox, `to` set). */
  message: MessageFrame;
  edited: EditedFrame;
  deleted: DeletedFrame;
  joined: JoinedFrame;
  left: LeftFrame;
  /** After every change of a room's member list. */
  presence: { room: string; members: User[] };
  typing: TypingFrame;
  read: ReadFrame;
  /** The client has already re-joined the room with since; live
   * messages until its answer are left to the replay (so in order). */
  lagged: LaggedFrame;
  resync: ResyncFrame;
  /** Error frames that answer no pending request. */
  error: ChatError;
  state: StateEvent;
}

export interface SendOptions {
  meta?: Record<string, unknown>;
  /** Your own ref (a non-empty string of at most 128 characters), e.g. a
   * failed send's `error.ref`: the server publishes a ref once. */
  ref?: string;
}

export class ChatClient {
  constructor(url: string, options?: ConnectOptions);
  readonly state: State;
  /** From welcome. */
  readonly user: User | null;
  /** From welcome. */
  readonly inbox: string | null;
  /** First welcome and every initial room joined; rejects on
   * unauthorized or refused. */
  readonly ready: Promise<void>;
  /** Sends (messages, DMs) not acknowledged yet. */
  readonly pending: number;
  on<K extends keyof ChatEvents>(
    type: K,
    listener: (event: ChatEvents[K]) => void,
  ): () => void;
  off<K extends keyof ChatEvents>(
    type: K,
    listener: (event: ChatEvents[K]) => void,
  ): void;
  /** Resolves with the message id. */
  send(room: string, text: string, options?: SendOptions): Promise<string>;
  /** A direct message; resolves with its id in your inbox. */
  sendTo(userId: string, text: string, options?: SendOptions): Promise<string>;
  edit(room: string, id: string, text: string): Promise<void>;
  delete(room: string, id: string): Promise<void>;
  join(room: string): Promise<void>;
  leave(room: string): Promise<void>;
  history(
    room: string,
    options?: { limit?: number; before?: string },
  ): Promise<MessageFrame[]>;
  /** The live presence list of a joined room. */
  members(room: string): User[];
  typing(room: string): void;
  typingTo(userId: string): void;
  /** Resolves on the server's ack; rejects with its error (e.g.
   * "not_found": the id is no longer stored). Offline, only the newest
   * per room waits (an older one resolves). */
  markRead(room: string, id: string): Promise<void>;
  receipts(room: string): Promise<Record<string, string>>;
  /** Connect now if waiting to reconnect, skipping the backoff delay
   * (what the browser's "online" event does). */
  reconnect(): void;
  close(): void;
}

export function connect(url: string, options?: ConnectOptions): ChatClient;
