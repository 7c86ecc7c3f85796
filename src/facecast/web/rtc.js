// The WebRTC transport of the page (docs/protocol.md, "WebRTC"): the same session as the engine WebSocket, with
// the microphone and the reply as audio tracks (echo cancellation, jitter buffer, Opus) and every JSON message
// and face frame on a data channel.
//
// - RtcConnection: offer/answer through POST /webrtc/offer (with the hello's fields), then the data channel.
//   Same interface as Connection (connection.js): reconnects with backoff when the peer drops.
// - RtcPlayer: the face clock of the WebRTC reply. The reply audio plays from the track through the page's
//   AudioContext; a tap (rtc-tap-worklet.js) hears the utterance's first voiced sample, which the server
//   names in `audio_onset`: that context time minus onset/48000 is where sample 0 played. playback_started
//   is sent when the audible clock reaches it, and face frame i shows at sample round(i * rate / 60) from
//   there, as with the WebSocket's player. Same interface as Player (player.js).

import { connectAfresh, reconnectLater, sendPing, wireText } from "./connection.js";
import { addFaceFrames, clearUtterance, faceOf, resetPlayer, stopAllUtterances } from "./player.js";
import { FPS } from "./protocol.js";

export const ONSET_LEVEL = 0.02; // the server's ONSET_LEVEL (facecast.http.rtc_audio)
const TRANSPORT_KEY = "facecast.transport";

/** The page's transport: ?transport=webrtc|websocket, else the stored choice, else the WebSocket. */
export function loadTransport(params) {
  const asked = params.get("transport");
  if (asked === "webrtc" || asked === "websocket") return asked;
  try {
    return localStorage.getItem(TRANSPORT_KEY) === "webrtc" ? "webrtc" : "websocket";
  } catch {
    return "websocket";
  }
}

export function saveTransport(value) {
  try {
    localStorage.setItem(TRANSPORT_KEY, value);
  } catch {
    // storage blocked: the choice lasts for this page only
  }
}

function gathered(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs); // the candidates found so far (the server does not trickle either)
  });
}

export class RtcConnection {
  /**
   * @param {string} offerUrl the server's /webrtc/offer
   * @param {string|null} token the page's access token
   * @param {{hello: () => object, onMessage: (msg: object) => void, onBinary: (buf: ArrayBuffer) => void,
   *          onStatus: (status: string, detail: string) => void, onOpen?: () => void,
   *          onTrack: (stream: MediaStream) => void}} handlers
   */
  constructor(offerUrl, token, handlers) {
    this.url = offerUrl;
    this.token = token;
    this.h = handlers;
    this.pc = null;
    this.dc = null;
    this.mic = null;
    this.attempt = 0;
    this.timer = null;
    this.pingTimer = null;
    this.pings = new Map();
    this.rttMs = null;
    this.everOpened = false;
    this.stopped = false;
    this.connects = 0;
    this.generation = 0;
    this.lastRefusal = null;
  }

  get ready() {
    return this.dc !== null && this.dc.readyState === "open";
  }

  async microphone() {
    if (this.mic && this.mic.getAudioTracks().some((t) => t.readyState === "live")) return this.mic;
    try {
      this.mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
        video: false,
      });
    } catch {
      this.mic = null; // no microphone: the reply still plays, typed text still works
    }
    return this.mic;
  }

  async connect() {
    clearTimeout(this.timer);
    this.timer = null;
    const generation = ++this.generation;
    this.h.onStatus("connecting", this.attempt ? `reconnecting (attempt ${this.attempt + 1})` : "connecting");
    let opened = false;
    try {
      const mic = await this.microphone();
      if (generation !== this.generation) return;
      const pc = new RTCPeerConnection({ iceServers: [] });
      this.pc = pc;
      const dc = pc.createDataChannel("facecast", { ordered: true });
      dc.binaryType = "arraybuffer";
      this.dc = dc;
      const micTrack = mic && mic.getAudioTracks()[0];
      if (micTrack) pc.addTransceiver(micTrack, { direction: "sendrecv", streams: [mic] });
      else pc.addTransceiver("audio", { direction: "recvonly" });
      pc.ontrack = (event) => this.h.onTrack(event.streams[0] || new MediaStream([event.track]));
      dc.onopen = () => {
        opened = true;
        this.everOpened = true;
        this.connects += 1;
        this.attempt = 0;
        this.pingTimer = setInterval(() => this.ping(), 5000);
        if (this.h.onOpen) this.h.onOpen();
      };
      dc.onmessage = (event) => this.receive(event.data);
      const lost = () => {
        if (this.pc !== pc) return;
        this.drop();
        if (!this.stopped) this.scheduleReconnect("the connection to the server was lost", opened);
      };
      dc.onclose = lost;
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "failed" || pc.connectionState === "closed") lost();
      };
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 2000);
      if (generation !== this.generation) return;
      const headers = { "Content-Type": "application/json" };
      if (this.token) headers.Authorization = `Bearer ${this.token}`;
      const hello = this.h.hello();
      const { type: _type, ...fields } = hello;
      const response = await fetch(this.url, {
        method: "POST", headers, body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", hello: fields }),
      });
      if (generation !== this.generation) return;
      if (!response.ok) {
        let body = {};
        try {
          body = await response.json();
        } catch {
          // not JSON: the status says enough
        }
        this.refused(response.status, body);
        return;
      }
      await pc.setRemoteDescription(await response.json());
    } catch (err) {
      if (generation !== this.generation) return;
      this.drop();
      this.scheduleReconnect(`cannot reach the Facecast server (${err.message || err})`, false);
    }
  }

  /** The offer was refused (HTTP status and the server's {code, message}). */
  refused(status, body) {
    this.drop();
    this.lastRefusal = { status, ...body };
    if (status === 400 && body.code && body.code !== "bad_offer") {
      // the hello was refused: the page may change its choice (like an `error` before `welcome`)
      this.h.onMessage({ type: "error", code: body.code, message: body.message || "" });
    }
    let detail;
    if (status === 401) detail = "the server refused the access token (add ?token=... to the page address)";
    else if (status === 403) detail = "the server does not accept this page's origin (allowed_origins)";
    else if (status === 501) detail = "the server has no WebRTC support (pip install 'facecast[webrtc]')";
    else detail = `the server refused the WebRTC offer (${status} ${body.code || ""}: ${body.message || ""})`;
    this.scheduleReconnect(detail, false);
  }

  receive(data) {
    if (typeof data === "string") {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        return;
      }
      if (msg.type === "pong" && this.pings.has(msg.id)) {
        this.rttMs = performance.now() - this.pings.get(msg.id);
        this.pings.delete(msg.id);
      }
      this.h.onMessage(msg);
    } else {
      this.h.onBinary(data);
    }
  }

  /** Forget the current peer (closing it); nothing of it reaches the page any more. */
  drop() {
    clearInterval(this.pingTimer);
    this.pings.clear();
    const pc = this.pc;
    const dc = this.dc;
    this.pc = null;
    this.dc = null;
    if (dc) dc.onopen = dc.onmessage = dc.onclose = null;
    if (pc) {
      pc.ontrack = pc.onconnectionstatechange = null;
      pc.close();
    }
  }

  scheduleReconnect(detail, wasOpen) {
    clearTimeout(this.timer);
    reconnectLater(this, detail, wasOpen);
  }

  restart() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.ready) this.dc.send(JSON.stringify({ type: "bye" }));
    this.drop();
    connectAfresh(this);
  }

  retryNow() {
    if (!this.pc && !this.stopped) connectAfresh(this);
  }

  send(message) {
    if (!this.ready) return false;
    this.dc.send(wireText(message));
    return true;
  }

  /** Microphone PCM goes on the audio track, not on the channel. */
  sendBinary() {
    return false;
  }

  ping() {
    sendPing(this);
  }

  close() {
    this.stopped = true;
    this.generation += 1;
    clearTimeout(this.timer);
    if (this.ready) this.dc.send(JSON.stringify({ type: "bye" }));
    this.drop();
    if (this.mic) for (const track of this.mic.getTracks()) track.stop();
    this.mic = null;
  }
}

class RtcUtterance {
  constructor(id, rate) {
    this.id = id;
    this.rate = rate;
    this.onset = undefined; // utterance sample of the first voiced sample (null: none), from audio_onset
    this.heardAt = null; // AudioContext time the tap heard it
    this.startTime = null; // AudioContext time of sample 0
    this.frames = [];
    this.framesReceived = 0;
    this.ended = false;
    this.expectedSamples = null;
    this.received = 0;
    this.started = false;
    this.finished = false;
    this.underruns = 0;
    this.endTime = null;
    this.segments = [];
  }

  positionAt(t) {
    if (this.startTime === null || t < this.startTime) return -1;
    const pos = (t - this.startTime) * this.rate;
    return this.ended ? Math.min(pos, this.expectedSamples) : pos;
  }
}

export class RtcPlayer {
  /**
   * @param {AudioContext} ctx
   * @param {{onStarted: (u: RtcUtterance, at: number) => void,
   *          onFinished: (u: RtcUtterance, position: number, interrupted: boolean) => void,
   *          audibleTime: () => number}} hooks
   */
  constructor(ctx, hooks) {
    this.ctx = ctx;
    this.hooks = hooks;
    this.utterances = new Map();
    this.dropped = new Set();
    this.output = ctx.createGain();
    this.output.connect(ctx.destination);
    this.tap = null;
    this.source = null;
    this.element = null;
    this.armed = null;
    this.stats = { chunks: 0, samples: 0, seconds: 0, faceFrames: 0, facePackets: 0, underruns: 0, ignored: 0 };
    this.ready = ctx.audioWorklet.addModule(new URL("rtc-tap-worklet.js", import.meta.url)).then(() => {
      this.tap = new AudioWorkletNode(ctx, "rtc-tap", {
        numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
        processorOptions: { level: ONSET_LEVEL },
      });
      this.tap.port.onmessage = (event) => this.heard(event.data.utterance, event.data.frame / ctx.sampleRate);
      this.tap.connect(this.output);
    });
  }

  /** The reply track's stream: through the tap to the speakers. */
  async attach(stream) {
    await this.ready;
    if (this.source) this.source.disconnect();
    // Chromium delivers a remote WebRTC track to Web Audio only while a media element plays it (muted here:
    // the AudioContext is what is heard).
    if (!this.element) {
      this.element = new Audio();
      this.element.muted = true;
    }
    this.element.srcObject = stream;
    this.element.play().catch(() => {});
    this.source = this.ctx.createMediaStreamSource(stream);
    this.source.connect(this.tap);
    this.arm();
  }

  get current() {
    for (const u of this.utterances.values()) if (!u.finished) return u;
    return null;
  }

  get speaking() {
    return this.current !== null;
  }

  begin(id, rate) {
    if (this.dropped.has(id) || this.utterances.has(id)) return;
    for (const u of this.utterances.values()) if (!u.ended && !u.finished) this.stop(u, true);
    this.utterances.set(id, new RtcUtterance(id, rate));
    this.output.gain.value = 1;
    this.arm();
  }

  /** The tap watches for the first utterance not yet heard, once the one before it has finished. */
  arm() {
    if (!this.tap) return;
    for (const u of this.utterances.values()) {
      if (u.finished) continue;
      if (u.heardAt === null && u.onset !== null) {
        if (this.armed !== u.id) this.tap.port.postMessage({ arm: u.id });
        this.armed = u.id;
      }
      return; // only the earliest unfinished one
    }
  }

  /** `audio_onset`: the utterance's first voiced sample (null: nothing voiced, it starts now). */
  onset(id, sample) {
    const u = this.utterances.get(id);
    if (!u || u.finished) return;
    u.onset = sample;
    if (sample === null) {
      u.startTime = this.hooks.audibleTime();
    } else if (u.heardAt !== null) {
      u.startTime = u.heardAt - sample / u.rate;
    }
    this.arm();
  }

  heard(id, at) {
    if (this.armed === id) this.armed = null;
    const u = this.utterances.get(id);
    if (!u || u.finished || u.heardAt !== null) return;
    u.heardAt = at;
    if (typeof u.onset === "number") u.startTime = at - u.onset / u.rate;
    this.stats.chunks += 1;
  }

  addAudio() {
    this.stats.ignored += 1; // the audio comes on the track
  }

  addFace(id, start, count, width, values) {
    addFaceFrames(this, id, start, count, width, values);
  }

  /** AudioContext time at which face frame `index` of utterance `id` is due (null: not known yet). */
  dueTime(id, index) {
    const u = this.utterances.get(id);
    if (!u || u.startTime === null) return null;
    return u.startTime + Math.round((index * u.rate) / FPS) / u.rate;
  }

  end(id, samples) {
    const u = this.utterances.get(id);
    if (!u) return;
    u.ended = true;
    u.expectedSamples = samples;
    u.received = samples;
    if (!samples) this.finish(u, 0, false);
  }

  clear(id) {
    clearUtterance(this, id);
  }

  stopAll() {
    return stopAllUtterances(this);
  }

  reset() {
    return resetPlayer(this);
  }

  stop(u, interrupted) {
    const position = Math.max(0, Math.round(u.positionAt(this.hooks.audibleTime())));
    this.output.gain.value = 0; // what is still in flight of a cleared reply is not heard
    this.finish(u, position, interrupted);
  }

  finish(u, position, interrupted) {
    if (u.finished) return;
    u.finished = true;
    u.endTime = this.hooks.audibleTime();
    u.frames = [];
    if (this.armed === u.id && this.tap) {
      this.tap.port.postMessage({ disarm: true });
      this.armed = null;
    }
    this.hooks.onFinished(u, position, interrupted);
    const done = [...this.utterances.values()].filter((x) => x.finished);
    for (const old of done.slice(0, Math.max(0, done.length - 8))) this.utterances.delete(old.id);
    this.arm();
  }

  tick() {
    const t = this.hooks.audibleTime();
    for (const u of this.utterances.values()) {
      if (u.finished || u.startTime === null) continue;
      if (!u.started && t >= u.startTime) {
        u.started = true;
        u.segments = [{ sample: 0, time: u.startTime }];
        this.hooks.onStarted(u, t);
      }
      if (u.started && u.ended && u.positionAt(t) >= u.expectedSamples) this.finish(u, u.expectedSamples, false);
    }
  }

  faceAt(t) {
    return faceOf(this, t);
  }
}
