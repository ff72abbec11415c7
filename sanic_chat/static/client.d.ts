// Types of the sanic-chat JavaScript client (client.js). The wire frames
// are those of docs/protocol.md.

export interface User {
  id: string;
  name: string;
}

// BEGIN FRAMES
export interface WelcomeFrame {
  type: "welcome";
  protocol: number;
  user: User;
  rooms: string[];
  inbox?: string;
}
export interface MessageFrame {
  type: "message";
  id: string;
  room: string;
  user: User;
  text?: string;
  ts: number;
  meta?: Record<string, unknown>;
  to?: string;
  edited_ts?: number;
  deleted?: boolean;
}
export interface EditedFrame {
  type: "edited";
  room: string;
  id: string;
  text: string;
  user: User;
  edited_ts: number;
}
export interface DeletedFrame {
  type: "deleted";
  room: string;
  id: string;
  user: User;
  ts: number;
}
export interface JoinedFrame {
  type: "joined";
  room: string;
  user: User;
  recovered?: boolean;
  last_read?: string | null;
  unread?: number;
}
export interface LeftFrame {
  type: "left";
  room: string;
  user: User;
  reason?: string;
}
export interface AckFrame {
  type: "ack";
  ref: string;
  room?: string;
  id?: string;
}
export interface HistoryFrame {
  type: "history";
  room: string;
  messages: MessageFrame[];
  truncated?: boolean;
}
export interface PresenceFrame {
  type: "presence";
  room: string;
  users: User[];
  count: number;
}
export interface TypingFrame {
  type: "typing";
  room: string;
  user: User;
}
export interface ReadFrame {
  type: "read";
  room: string;
  user: User;
  id: string;
}
export interface ReceiptsFrame {
  type: "receipts";
  room: string;
  read: Record<string, string>;
}
export interface LaggedFrame {
  type: "lagged";
  room: string;
  skipped: number;
}
export interface ResyncFrame {
  type: "resync";
  room: string;
}
export interface RefreshedFrame {
  type: "refreshed";
  expires_at: number;
}
export interface PongFrame {
  type: "pong";
}
export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  ref?: string;
  room?: string;
}
// Frames the client sends.
export interface JoinFrame {
  type: "join";
  room: string;
  since?: string;
  ref?: string;
}
export interface LeaveFrame {
  type: "leave";
  room: string;
  ref?: string;
}
export interface SendMessageFrame {
  type: "message";
  room?: string;
  to?: string;
  text: string;
  meta?: Record<string, unknown>;
  ref?: string;
}
export interface EditFrame {
  type: "edit";
  room: string;
  id: string;
  text: string;
  ref?: string;
}
export interface DeleteFrame {
  type: "delete";
  room: string;
  id: string;
  ref?: string;
}
export interface HistoryRequestFrame {
  type: "history";
  room: string;
  limit?: number;
  before?: string;
  ref?: string;
}
export interface PresenceRequestFrame {
  type: "presence";
  room: string;
  ref?: string;
}
export interface TypingRequestFrame {
  type: "typing";
  room?: string;
  to?: string;
  ref?: string;
}
export interface ReadRequestFrame {
  type: "read";
  room: string;
  id: string;
  ref?: string;
}
export interface ReceiptsRequestFrame {
  type: "receipts";
  room: string;
  ref?: string;
}
export interface RefreshFrame {
  type: "refresh";
  token: string;
  ref?: string;
}
export interface PingFrame {
  type: "ping";
}
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
   * once after a refused identity. */
  getToken?: () => string | null | Promise<string | null>;
  /** Joined on connect, re-joined with since on every reconnect. */
  rooms?: string[];
  /** Guest display name (?name=). */
  name?: string;
  reconnect?: ReconnectOptions;
  /** Requests held while offline or unanswered (100). */
  maxPending?: number;
  /** Their UTF-8 bytes (262144); over either bound a request rejects at
   * once with code "queue_full". */
  maxPendingBytes?: number;
  /** ms a request may wait for its answer across reconnects (30000);
   * then it rejects with code "timeout" (a send may still have been
   * published; a resend with the same ref is safe). */
  sendTimeout?: number;
  /** ms between application pings (30000; 0: none); a socket silent
   * for a whole period is closed and reconnected. */
  heartbeat?: number;
  /** The WebSocket constructor (default: globalThis.WebSocket). */
  WebSocket?: typeof WebSocket;
}

export class ChatError extends Error {
  /** The error frame's code, or the client's own: "queue_full",
   * "timeout", "unauthorized", "refused", "closed", "token". */
  code: string;
  frame?: ErrorFrame;
}

export interface StateEvent {
  state: State;
  previous: State;
  code?: number;
  reason?: string;
}

export interface ChatEvents {
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
  /** The client has already re-joined the room with since. */
  lagged: LaggedFrame;
  resync: ResyncFrame;
  /** Error frames that answer no pending request. */
  error: ChatError;
  state: StateEvent;
}

export interface SendOptions {
  meta?: Record<string, unknown>;
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
  /** Requests (sends, edits, history...) not answered yet. */
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
  markRead(room: string, id: string): void;
  receipts(room: string): Promise<Record<string, string>>;
  close(): void;
}

export function connect(url: string, options?: ConnectOptions): ChatClient;
