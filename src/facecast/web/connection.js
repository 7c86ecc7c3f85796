// The engine WebSocket with automatic reconnection (exponential backoff with jitter) and a keep-alive ping
// that also measures the round trip.

// What the two connections (Connection here, RtcConnection in rtc.js) share. `conn` has `connect()`, the
// backoff `attempt`, its reconnect `timer`, `stopped` and the page's hooks `h`.

/** After a failure: `connect()` again after a growing, jittered delay, telling the page when (`h.onStatus`). */
export function reconnectLater(conn, detail, wasOpen) {
  const delay = Math.min(10000, 500 * 2 ** conn.attempt) * (0.8 + 0.4 * Math.random());
  conn.attempt += 1;
  const seconds = Math.max(1, Math.round(delay / 1000));
  conn.h.onStatus(wasOpen ? "reconnecting" : "offline", `${detail}; retrying in ${seconds} s`);
  conn.timer = setTimeout(() => conn.connect(), delay);
}

/** Connect now, as the first time (no backoff left over, not stopped). */
export function connectAfresh(conn) {
  conn.stopped = false;
  conn.attempt = 0;
  conn.connect();
}

/** A JSON message as sent: a string as it is, anything else as JSON. */
export function wireText(message) {
  return typeof message === "string" ? message : JSON.stringify(message);
}

/** Send a keep-alive ping; its id is the send time, kept (the last 5) in `pings` to time the pong. */
export function sendPing(conn) {
  const id = Math.floor(performance.now());
  conn.pings.set(id, performance.now());
  if (conn.pings.size > 5) conn.pings.delete(conn.pings.keys().next().value);
  conn.send({ type: "ping", id });
}

export class Connection {
  /**
   * @param {string} url ws:// URL of /ws/engine (with ?token= when the page had one)
   * @param {{hello: () => object, onMessage: (msg: object) => void, onBinary: (buf: ArrayBuffer) => void,
   *          onStatus: (status: string, detail: string) => void, onOpen?: () => void}} handlers
   */
  constructor(url, handlers) {
    this.url = url;
    this.h = handlers;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.pingTimer = null;
    this.pings = new Map();
    this.rttMs = null;
    this.everOpened = false;
    this.stopped = false;
    this.connects = 0;
  }

  get ready() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    this.h.onStatus("connecting", this.attempt ? `reconnecting (attempt ${this.attempt + 1})` : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.h.onStatus("offline", `bad server address: ${err.message}`);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.everOpened = true;
      this.connects += 1;
      this.send(this.h.hello());
      this.pingTimer = setInterval(() => this.ping(), 5000);
      if (this.h.onOpen) this.h.onOpen();
    };
    ws.onmessage = (event) => {
      if (typeof event.data === "string") {
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          return; // not ours to judge; the protocol only sends JSON objects
        }
        if (msg.type === "welcome") this.attempt = 0;
        if (msg.type === "pong" && this.pings.has(msg.id)) {
          this.rttMs = performance.now() - this.pings.get(msg.id);
          this.pings.delete(msg.id);
        }
        this.h.onMessage(msg);
      } else {
        this.h.onBinary(event.data);
      }
    };
    ws.onerror = () => {}; // the close event follows and carries what we need
    ws.onclose = (event) => {
      clearInterval(this.pingTimer);
      this.pings.clear();
      if (this.ws === ws) this.ws = null;
      if (this.stopped) return;
      let detail;
      if (event.code === 4401) detail = "the server refused the access token (add ?token=... to the page address)";
      else if (!opened) detail = "cannot reach the Facecast server";
      else detail = "the connection to the server was lost";
      this.scheduleReconnect(detail, opened);
    };
  }

  scheduleReconnect(detail, wasOpen) {
    reconnectLater(this, detail, wasOpen);
  }

  /**
   * End the current session cleanly (`bye`, close 1000) and open a new one at once, with a fresh `hello`
   * (the hello's choices — turns, workflow, character — are fixed for a session's lifetime).
   */
  restart() {
    clearTimeout(this.timer);
    this.timer = null;
    clearInterval(this.pingTimer);
    this.pings.clear();
    const old = this.ws;
    this.ws = null;
    if (old) {
      old.onopen = old.onmessage = old.onclose = old.onerror = null; // nothing of the old session reaches us
      if (old.readyState === WebSocket.OPEN) {
        old.send(JSON.stringify({ type: "bye" }));
        old.close(1000);
      } else if (old.readyState === WebSocket.CONNECTING) {
        old.addEventListener("open", () => old.close(1000)); // closing it now would log a browser warning
      }
    }
    connectAfresh(this);
  }

  /** Retry at once (e.g. the user clicked the status). */
  retryNow() {
    if (!this.ws && !this.stopped) connectAfresh(this);
  }

  send(message) {
    if (!this.ready) return false;
    this.ws.send(wireText(message));
    return true;
  }

  sendBinary(buffer) {
    if (!this.ready) return false;
    this.ws.send(buffer);
    return true;
  }

  ping() {
    sendPing(this);
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pingTimer);
    if (this.ws) {
      this.send({ type: "bye" });
      this.ws.close(1000);
    }
  }
}
