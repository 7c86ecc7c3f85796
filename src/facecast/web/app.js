// The Facecast browser client: the same engine WebSocket protocol as a game engine (docs/protocol.md).
//
// Everything a test (or a curious user, in the console) may want to observe is on `window.facecast`:
// counters, the acknowledgements sent, a log of messages in and out, finished utterances with their audio
// clock span, the mouth openness the face is drawn with, and the per-stage latency of each turn.

import { Connection } from "./connection.js";
import { FaceRenderer, IdleAnimator, mouthOpenness } from "./face.js";
import { Mic, MicError } from "./mic.js";
import { Player } from "./player.js";
import {
  decodeBinary, encodeMic, FACE_WIDTH, FRAME_NAMES, KIND_AUDIO, KIND_FACE, RATES, VERSION,
} from "./protocol.js";

const $ = (id) => document.getElementById(id);
const now = () => performance.now();
const LOG_LIMIT = 3000;
const VOICE_RMS = 0.02; // hands-free fallback endpointing: level that counts as voice
const VOICE_START_MS = 160; // this much voice starts a turn...
const VOICE_END_MS = 700; // ...and this much silence after it ends the turn
const STAGES = [
  ["transcript", "final transcript"],
  ["utterance_start", "reply starts"],
  ["first_audio", "first audio"],
  ["playback", "playback starts"],
  ["first_face", "first face frame"],
];

// -- audio --------------------------------------------------------------------------------------------
const ctx = new AudioContext({ latencyHint: "interactive" });
const audioRate = RATES.includes(ctx.sampleRate) ? ctx.sampleRate : 48000; // buffers at any rate play fine
const micRate = RATES.includes(ctx.sampleRate) ? ctx.sampleRate : 16000; // the worklet resamples if needed

/** AudioContext time of the sample being heard now (output latency included), never ahead of currentTime. */
function audibleTime() {
  if (ctx.state === "running" && ctx.getOutputTimestamp) {
    const ts = ctx.getOutputTimestamp();
    if (ts.contextTime > 0 && ts.performanceTime > 0) {
      return Math.min(ctx.currentTime, ts.contextTime + (now() - ts.performanceTime) / 1000);
    }
  }
  return Math.max(0, ctx.currentTime - (ctx.baseLatency || 0) - (ctx.outputLatency || 0));
}

// -- observable state ---------------------------------------------------------------------------------
const fc = {
  version: VERSION,
  frameNames: FRAME_NAMES,
  ready: false,
  status: "connecting",
  statusDetail: "",
  welcome: null,
  audioContext: ctx,
  audioRate,
  micRate,
  handsFree: false,
  serverTurns: false,
  talking: false,
  counters: {
    messagesIn: 0, messagesOut: 0, audioChunks: 0, audioSamples: 0, audioSeconds: 0, facePackets: 0,
    faceFrames: 0, micChunks: 0, micSamples: 0, connects: 0, errors: 0, badFrames: 0,
  },
  acks: [],
  log: [],
  utterances: [],
  transcript: [],
  errors: [],
  turns: [],
  turn: null,
  mouthOpen: 0,
  faceSource: "idle",
  faceUtterance: 0,
  faceIndex: -1,
  micError: null,
};
window.facecast = fc;

function record(dir, type, fields = {}) {
  fc.log.push({ dir, type, at: now(), ...fields });
  if (fc.log.length > LOG_LIMIT) fc.log.splice(0, fc.log.length - LOG_LIMIT);
}

// -- connection -----------------------------------------------------------------------------------------
const pageParams = new URLSearchParams(location.search);
const wsUrl = new URL("ws/engine", location.href);
wsUrl.protocol = location.protocol === "https:" ? "wss:" : "ws:";
wsUrl.search = "";
if (pageParams.get("token")) wsUrl.searchParams.set("token", pageParams.get("token"));

const conn = new Connection(wsUrl.href, {
  hello: () => {
    const hello = {
      type: "hello", version: VERSION, audio: { rate: audioRate, channels: 1 }, mic: { rate: micRate, channels: 1 },
      face: true, acks: true,
    };
    fc.counters.messagesOut += 1;
    record("out", "hello", { audio: audioRate, mic: micRate });
    return hello;
  },
  onOpen: () => {
    fc.counters.connects = conn.connects;
  },
  onStatus: setStatus,
  onMessage: onMessage,
  onBinary: onBinary,
});

function send(message) {
  if (!conn.send(message)) return false;
  fc.counters.messagesOut += 1;
  const { type, ...rest } = message;
  record("out", type, rest);
  return true;
}

function setStatus(status, detail) {
  fc.status = status;
  fc.statusDetail = detail;
  const pill = $("status");
  pill.dataset.state = status;
  $("status-text").textContent = {
    connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…", offline: "Server unreachable",
  }[status] || status;
  pill.title = detail;
  if (status === "offline" || status === "reconnecting") {
    showBanner("server", `${capitalise(detail)}. Start it with “facecast run”; the page reconnects by itself.`);
    if (player.stopAll()) markInterrupted();
    stopTurnTimers();
  } else if (status === "connected") {
    hideBanner("server");
  }
}

// -- playback, acknowledgements ------------------------------------------------------------------------------
const player = new Player(ctx, {
  audibleTime,
  onStarted: (u, at) => {
    const message = { type: "playback_started", utterance: u.id, at: Number(at.toFixed(4)) };
    send(message);
    fc.acks.push({ type: "playback_started", utterance: u.id, at: now(), ctxTime: at });
    stage("playback", u.id);
    setSpeaking(true);
  },
  onFinished: (u, position, interrupted) => {
    const summary = {
      id: u.id, rate: u.rate, samples: u.received, expectedSamples: u.expectedSamples, position, interrupted,
      startTime: u.startTime, endTime: ctx.currentTime, started: u.started, framesReceived: u.framesReceived,
      underruns: u.underruns,
    };
    fc.utterances.push(summary);
    if (u.segments.length) {
      send({ type: "playback_finished", utterance: u.id, position, interrupted });
      fc.acks.push({ type: "playback_finished", utterance: u.id, at: now(), position, interrupted });
    }
    if (interrupted) markInterrupted(u.id);
    setSpeaking(player.speaking);
  },
});
setInterval(() => {
  player.tick();
  if (now() - lastDraw > 100) updateFace(); // keep state current even when frames are not painted
  endpoint();
}, 10);

function resumeAudio() {
  if (ctx.state !== "running") ctx.resume().catch(() => {});
}
ctx.addEventListener("statechange", () => {
  if (ctx.state === "running") hideBanner("sound");
});
for (const event of ["pointerdown", "keydown"]) document.addEventListener(event, resumeAudio, { capture: true });

// -- messages -------------------------------------------------------------------------------------------
function onMessage(msg) {
  fc.counters.messagesIn += 1;
  const { type, ...rest } = msg;
  if (type !== "pong") record("in", type, rest);
  switch (type) {
    case "welcome":
      fc.welcome = msg;
      // A server that detects turns itself (VAD) says so; hands-free then simply streams the microphone.
      fc.serverTurns = msg.turns === "server";
      setStatus("connected", `engine protocol v${msg.version}, audio ${msg.audio.rate} Hz`);
      break;
    case "transcript":
      onTranscript(msg);
      break;
    case "utterance_start":
      player.begin(msg.utterance, msg.rate, msg.channels);
      stage("utterance_start", msg.utterance);
      if (ctx.state !== "running") {
        showBanner("sound", "Click anywhere on the page to turn the sound on.");
      }
      break;
    case "reply_text":
      addLine("character", msg.text, { utterance: msg.utterance });
      break;
    case "emotion":
      $("emotion").textContent = msg.emotion === "neutral" ? "" : msg.emotion;
      break;
    case "utterance_end":
      player.end(msg.utterance, msg.samples);
      break;
    case "clear_buffer":
      player.clear(msg.utterance);
      break;
    case "error":
      onError(msg);
      break;
    case "timing":
      renderServerTiming(msg);
      break;
    default:
      break; // pong, and fields or types a newer server adds
  }
}

function onBinary(buffer) {
  let packet;
  try {
    packet = decodeBinary(buffer);
  } catch (err) {
    fc.counters.badFrames += 1;
    record("in", "bad_binary", { message: String(err.message) });
    return;
  }
  if (packet.kind === KIND_AUDIO) {
    fc.counters.audioChunks += 1;
    fc.counters.audioSamples += packet.pcm.length;
    fc.counters.audioSeconds += packet.pcm.length / audioRate;
    record("in", "audio", { utterance: packet.utterance, offset: packet.offset, samples: packet.pcm.length });
    stage("first_audio", packet.utterance);
    player.addAudio(packet.utterance, packet.offset, packet.pcm);
  } else if (packet.kind === KIND_FACE) {
    fc.counters.facePackets += 1;
    fc.counters.faceFrames += packet.count;
    record("in", "face", { utterance: packet.utterance, start: packet.start, count: packet.count });
    stage("first_face", packet.utterance);
    player.addFace(packet.utterance, packet.start, packet.count, packet.width, packet.values);
  }
}

function onTranscript(msg) {
  if (msg.final) {
    const live = $("transcript").querySelector(".line.partial");
    if (live) live.remove();
    if (!msg.typed) {
      const pending = fc.turn && fc.turn.kind !== "typed" && fc.turn.stages.transcript === undefined;
      if (!pending || fc.talking) {
        // a final we did not ask for: the server detected the end of the turn itself (VAD)
        fc.serverTurns = true;
        startTurn("server", lastVoiceAt || now());
        talkTurnStarted = true;
        speech.active = false;
      }
      stage("transcript");
    }
    if (msg.text.trim()) addLine("player", msg.text, { typed: !!msg.typed });
  } else if (msg.text.trim()) {
    let live = $("transcript").querySelector(".line.partial");
    if (!live) live = addLine("player", "", { partial: true });
    live.querySelector(".text").textContent = msg.text;
  }
}

function onError(msg) {
  fc.counters.errors += 1;
  fc.errors.push({ code: msg.code, message: msg.message, at: now() });
  if (msg.code === "no_speech") {
    addNote("I didn’t catch that — try again, a little closer to the microphone.");
  } else if (msg.code === "ack_timeout") {
    addNote("The reply was dropped because its audio could not start (is the sound blocked?).");
  } else {
    addNote(`${msg.code}: ${msg.message}`);
  }
}

// -- turns and latency -----------------------------------------------------------------------------------
function startTurn(kind, t0 = now()) {
  if (fc.turn) fc.turns.push(fc.turn);
  if (fc.turns.length > 50) fc.turns.shift();
  fc.turn = { kind, t0, utterance: null, stages: {} };
  renderLatency();
}

function stage(name, utterance) {
  const turn = fc.turn;
  if (!turn || turn.stages[name] !== undefined) return;
  if (utterance !== undefined) {
    if (turn.utterance === null && name === "utterance_start") turn.utterance = utterance;
    if (turn.utterance !== utterance) return;
  }
  turn.stages[name] = Math.max(0, now() - turn.t0);
  renderLatency();
}

function stopTurnTimers() {
  fc.turn = null;
}

function renderLatency() {
  const turn = fc.turn;
  const body = $("latency-rows");
  const rows = [];
  let previous = 0;
  for (const [key, label] of STAGES) {
    const ms = turn ? turn.stages[key] : undefined;
    const value = ms === undefined ? "—" : `${Math.round(ms)} ms`;
    const delta = ms === undefined ? "" : `+${Math.round(ms - previous)}`;
    const width = ms === undefined ? 0 : Math.min(100, ms / 20);
    if (ms !== undefined) previous = ms;
    rows.push(`<tr data-stage="${key}"><th>${label}</th><td class="bar"><span style="width:${width}%"></span></td>` +
      `<td class="ms">${value}</td><td class="delta">${delta}</td></tr>`);
  }
  body.innerHTML = rows.join("");
  $("latency-origin").textContent = turn
    ? { voice: "from releasing the talk button", typed: "from sending the text", server: "from the end of your speech",
      handsfree: "from the end of your speech" }[turn.kind]
    : "waiting for a turn";
  $("rtt").textContent = conn.rttMs === null ? "" : `round trip ${conn.rttMs.toFixed(1)} ms`;
}
const SERVER_STAGES = [
  ["endpoint", "endpoint"], ["stt_final", "STT final"], ["llm_first_token", "LLM first token"],
  ["first_sentence", "first sentence"], ["tts_first_chunk", "TTS first chunk"], ["first_face", "first face"],
  ["engine_ack", "playback ack"],
];

/** The server's own per-stage times of the turn (`timing` message), in ms from the end of speech. */
function renderServerTiming(msg) {
  const stages = msg.stages || {};
  if (fc.turn) fc.turn.server = stages;
  const parts = SERVER_STAGES.filter(([key]) => typeof stages[key] === "number")
    .map(([key, label]) => `<span><b>${Math.round(stages[key])}</b> ${label}</span>`);
  $("server-timing").innerHTML = parts.length ? `server: ${parts.join(" · ")}` : "";
}

setInterval(() => {
  if (conn.rttMs !== null) $("rtt").textContent = `round trip ${conn.rttMs.toFixed(1)} ms`;
}, 2000);

// -- transcript pane ------------------------------------------------------------------------------------
function addLine(who, text, options = {}) {
  const pane = $("transcript");
  let line = null;
  if (who === "character" && options.utterance !== undefined) {
    line = pane.querySelector(`.line.character[data-utterance="${options.utterance}"]`);
  }
  if (line) {
    const span = line.querySelector(".text");
    span.textContent = `${span.textContent} ${text}`.trim();
  } else {
    line = document.createElement("div");
    line.className = `line ${who}${options.partial ? " partial" : ""}${options.typed ? " typed" : ""}`;
    if (options.utterance !== undefined) line.dataset.utterance = options.utterance;
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who === "player" ? "You" : "Character";
    const span = document.createElement("span");
    span.className = "text";
    span.textContent = text;
    line.append(name, span);
    const live = pane.querySelector(".line.partial");
    if (live && !options.partial) pane.insertBefore(line, live);
    else pane.append(line);
  }
  if (!options.partial) {
    fc.transcript.push({ who, text, utterance: options.utterance ?? null, typed: !!options.typed, at: now() });
  }
  pane.scrollTop = pane.scrollHeight;
  $("empty-hint").hidden = true;
  return line;
}

function addNote(text) {
  const pane = $("transcript");
  const note = document.createElement("div");
  note.className = "line note";
  note.textContent = text;
  pane.append(note);
  pane.scrollTop = pane.scrollHeight;
}

function markInterrupted(id) {
  const pane = $("transcript");
  const lines = id === undefined ? pane.querySelectorAll(".line.character")
    : pane.querySelectorAll(`.line.character[data-utterance="${id}"]`);
  const line = lines[lines.length - 1];
  if (line) line.classList.add("interrupted");
}

// -- banners ---------------------------------------------------------------------------------------------
const banners = new Map();
function showBanner(key, text) {
  banners.set(key, text);
  renderBanners();
}
function hideBanner(key) {
  banners.delete(key);
  renderBanners();
}
function renderBanners() {
  const el = $("banner");
  el.hidden = banners.size === 0;
  el.replaceChildren(...[...banners].map(([key, text]) => {
    const p = document.createElement("p");
    p.dataset.kind = key;
    p.textContent = text;
    return p;
  }));
}
const capitalise = (s) => s.charAt(0).toUpperCase() + s.slice(1);

// -- microphone -----------------------------------------------------------------------------------------
let micOffset = 0;
let turnMicSamples = 0;
let lastVoiceAt = 0;
let talkTurnStarted = false; // the server ended a turn while the talk button was still held
const speech = { active: false, voiceMs: 0 };

const mic = new Mic(ctx, {
  rate: micRate,
  prerollMs: 700,
  onChunk: (pcm) => {
    if (!conn.ready) return;
    conn.sendBinary(encodeMic(micOffset, pcm));
    micOffset += pcm.length;
    turnMicSamples += pcm.length;
    fc.counters.micChunks += 1;
    fc.counters.micSamples += pcm.length;
  },
  onLevel: (rms) => {
    const t = now();
    if (rms > VOICE_RMS) {
      lastVoiceAt = t;
      speech.voiceMs += 20;
    } else if (!speech.active) {
      speech.voiceMs = Math.max(0, speech.voiceMs - 10);
    }
    $("level").style.width = `${Math.min(100, Math.sqrt(rms) * 250)}%`;
  },
});

function micFailed(err) {
  const message = err instanceof MicError ? err.message : `The microphone could not be opened (${err}).`;
  fc.micError = { reason: err.reason || "failed", message };
  showBanner("mic", message);
  $("talk").disabled = true;
  $("handsfree").checked = false;
  fc.handsFree = false;
  document.body.classList.remove("hands-free");
}

/** Barge-in: the player starts talking over the character. */
function bargeIn() {
  const playing = player.stopAll();
  send({ type: "interrupt" });
  if (playing) markInterrupted();
}

async function pressTalk() {
  if (fc.talking || fc.handsFree) return;
  fc.talking = true;
  document.body.classList.add("talking");
  resumeAudio();
  if (player.speaking) bargeIn();
  try {
    await mic.ensureOpen();
  } catch (err) {
    fc.talking = false;
    document.body.classList.remove("talking");
    micFailed(err);
    return;
  }
  if (!fc.talking) return; // released while the microphone was opening
  turnMicSamples = 0;
  talkTurnStarted = false;
  record("out", "mic_start", {});
  mic.listen();
}

function releaseTalk() {
  if (!fc.talking) return;
  fc.talking = false;
  document.body.classList.remove("talking");
  if (!mic.listening) return;
  mic.mute();
  if (turnMicSamples > 0 && send({ type: "end_of_speech" }) && !talkTurnStarted) startTurn("voice");
}

async function setHandsFree(on) {
  fc.handsFree = on;
  $("handsfree").checked = on;
  document.body.classList.toggle("hands-free", on);
  if (!on) {
    mic.mute();
    speech.active = false;
    return;
  }
  resumeAudio();
  try {
    await mic.ensureOpen();
  } catch (err) {
    micFailed(err);
    return;
  }
  if (fc.serverTurns) mic.listen();
}

/**
 * Hands-free turn taking. When the server detects turns itself (its welcome says `vad`, or a final
 * transcript arrived without our end_of_speech), the page just streams. Until then it gates the microphone
 * on its own level meter and sends end_of_speech after VOICE_END_MS of silence.
 */
function endpoint() {
  if (!fc.handsFree || !mic.open) return;
  if (fc.serverTurns) {
    if (!mic.listening) mic.listen();
    return;
  }
  const t = now();
  if (!speech.active && speech.voiceMs >= VOICE_START_MS) {
    speech.active = true;
    if (player.speaking) bargeIn();
    turnMicSamples = 0;
    mic.listen(); // the pre-roll holds the start of the word
  } else if (speech.active && t - lastVoiceAt > VOICE_END_MS) {
    speech.active = false;
    speech.voiceMs = 0;
    if (!fc.serverTurns) {
      mic.mute();
      if (turnMicSamples > 0 && send({ type: "end_of_speech" })) startTurn("handsfree", lastVoiceAt);
    }
  }
}

// -- typed input ------------------------------------------------------------------------------------------
function sendText(text) {
  const clean = text.trim();
  if (!clean) return false;
  resumeAudio();
  if (player.stopAll()) markInterrupted();
  if (!send({ type: "text", text: clean })) {
    addNote("Not connected to the server — your message was not sent.");
    return false;
  }
  startTurn("typed");
  return true;
}

// -- face --------------------------------------------------------------------------------------------------
const renderer = new FaceRenderer($("face"));
const idle = new IdleAnimator(7);
let blend = 0;
let lastLive = new Float32Array(FACE_WIDTH);
let lastUpdate = now();
let lastDraw = 0;
let shown = idle.frame(0);

function updateFace() {
  const t = now();
  const dt = Math.min(0.1, (t - lastUpdate) / 1000);
  lastUpdate = t;
  const live = player.faceAt(audibleTime());
  if (live) {
    lastLive = live.values;
    fc.faceUtterance = live.utterance;
    fc.faceIndex = live.index;
  }
  blend = live ? Math.min(1, blend + dt / 0.08) : Math.max(0, blend - dt / 0.18);
  const base = idle.frame(t / 1000);
  const out = new Float32Array(FACE_WIDTH);
  for (let k = 0; k < FACE_WIDTH; k++) out[k] = base[k] + (lastLive[k] - base[k]) * blend;
  shown = out;
  fc.faceSource = blend > 0.5 ? "live" : "idle";
  fc.mouthOpen = mouthOpenness(out);
  return out;
}

function frame() {
  lastDraw = now();
  renderer.draw(updateFace());
  requestAnimationFrame(frame);
}

function setSpeaking(on) {
  document.body.classList.toggle("speaking", on);
}

// -- wiring ----------------------------------------------------------------------------------------------
function init() {
  const talk = $("talk");
  talk.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    talk.setPointerCapture(event.pointerId);
    pressTalk();
  });
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) talk.addEventListener(type, releaseTalk);
  talk.addEventListener("contextmenu", (event) => event.preventDefault());
  const typing = (el) => el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA") && el.type !== "checkbox";
  document.addEventListener("keydown", (event) => {
    if (event.code !== "Space" || typing(event.target)) return;
    event.preventDefault();
    if (!event.repeat) pressTalk();
  });
  document.addEventListener("keyup", (event) => {
    if (event.code !== "Space" || typing(event.target)) return;
    event.preventDefault();
    releaseTalk();
  });
  window.addEventListener("blur", releaseTalk);
  $("handsfree").addEventListener("change", (event) => setHandsFree(event.target.checked));
  $("typed").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("text");
    if (sendText(input.value)) input.value = "";
  });
  $("status").addEventListener("click", () => conn.retryNow());
  fc.api = { pressTalk, releaseTalk, sendText, setHandsFree, bargeIn, retry: () => conn.retryNow() };
  renderLatency();
  requestAnimationFrame(frame);
  conn.connect();
  if (ctx.state !== "running") {
    // Browsers start audio only after a gesture; the first click or key press turns it on.
    setTimeout(() => {
      if (ctx.state !== "running") showBanner("sound", "Click anywhere on the page to turn the sound on.");
    }, 400);
  }
  fc.ready = true;
}

init();
