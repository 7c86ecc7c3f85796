// The Facecast browser client: the same engine WebSocket protocol as a game engine (docs/protocol.md).
//
// Everything a test (or a curious user, in the console) may want to observe is on `window.facecast`:
// counters, the acknowledgements sent, a log of messages in and out, finished utterances with their audio
// clock span, the mouth openness the face is drawn with, and the per-stage latency of each turn.

import {
  AUDIO_DRIVEN, fetchCharacters, helloChoices, loadPrefs, renderCharacters, renderChoices, savePrefs, WORKFLOWS,
} from "./choices.js";
import { Connection } from "./connection.js";
import { FaceRenderer, IdleAnimator, mouthOpenness } from "./face.js";
import { Mic, MicError } from "./mic.js";
import { LiveFace, Player } from "./player.js";
import { loadTransport, RtcConnection, RtcPlayer, saveTransport } from "./rtc.js";
import { Banners, TranscriptPane } from "./transcript.js";
import {
  decodeBinary, encodeMic, FACE_WIDTH, FRAME_NAMES, KIND_AUDIO, KIND_FACE, RATES, VERSION,
} from "./protocol.js";

const $ = (id) => document.getElementById(id);
const now = () => performance.now();
const LOG_LIMIT = 3000;
const VOICE_RMS = 0.02; // level that counts as voice (the latency readout's "end of your speech")
const HEARING_MS = 1500; // the listening indicator says "hearing you" this long after a partial transcript
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
  workflow: "conversation",
  character: "", // "" = the server's default character
  characters: null, // the server's character names (GET /characters), once known
  sessions: 0, // welcomes received: each mode, workflow or character change opens a new session
  listening: "off", // the listening indicator: off | live (the microphone streams) | hearing (partials arrive)
  emotion: null, // {utterance, emotion} shown on the badge while that reply plays
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
  transport: "websocket", // websocket | webrtc (rtc.js): how this page reaches the server
  sync: [], // per face packet: {transport, utterance, start, lateMs} (arrival vs its audio's playout; + = late)
};
window.facecast = fc;

/** The page's measured audio/face sync: how late face packets arrived against the playout of their audio. */
fc.syncStats = () => {
  const late = fc.sync.map((s) => Math.max(0, s.lateMs)).sort((a, b) => a - b);
  const at = (q) => (late.length ? late[Math.min(late.length - 1, Math.floor(q * late.length))] : null);
  return { transport: fc.transport, packets: late.length, p50: at(0.5), p99: at(0.99), max: at(1) };
};

function record(dir, type, fields = {}) {
  fc.log.push({ dir, type, at: now(), ...fields });
  if (fc.log.length > LOG_LIMIT) fc.log.splice(0, fc.log.length - LOG_LIMIT);
}

const audioDriven = () => AUDIO_DRIVEN.includes(fc.workflow);

// -- connection -----------------------------------------------------------------------------------------
const pageParams = new URLSearchParams(location.search);
const wsUrl = new URL("ws/engine", location.href);
wsUrl.protocol = location.protocol === "https:" ? "wss:" : "ws:";
wsUrl.search = "";
if (pageParams.get("token")) wsUrl.searchParams.set("token", pageParams.get("token"));

fc.transport = loadTransport(pageParams);
const offerUrl = new URL("webrtc/offer", location.href);
offerUrl.search = "";
const connHandlers = {
  hello: () => {
    const choices = helloChoices(fc);
    if (fc.transport === "webrtc") choices.turns = "server"; // the microphone track streams all the time
    const hello = {
      type: "hello", version: VERSION, audio: { rate: audioRate, channels: 1 }, mic: { rate: micRate, channels: 1 },
      face: true, acks: !audioDriven(), ...choices, // nothing plays in puppet and lip-sync: nothing to acknowledge
    };
    micOffset = 0; // a new session's microphone stream starts at sample 0
    fc.welcome = null;
    fc.counters.messagesOut += 1;
    record("out", "hello", { audio: audioRate, mic: micRate, acks: hello.acks, ...choices });
    return hello;
  },
  onOpen: () => {
    fc.counters.connects = conn.connects;
  },
  onStatus: setStatus,
  onMessage: onMessage,
  onBinary: onBinary,
  onTrack: (stream) => {
    if (player.attach) player.attach(stream);
  },
};
const makeConnection = () => (fc.transport === "webrtc"
  ? new RtcConnection(offerUrl.href, pageParams.get("token"), connHandlers)
  : new Connection(wsUrl.href, connHandlers));
let conn = makeConnection();

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
    fc.welcome = null; // that session is gone
    if (player.stopAll()) markInterrupted();
    liveFace.stop();
    stopTurnTimers();
  } else if (status === "connected") {
    hideBanner("server");
  }
}

// -- playback, acknowledgements ------------------------------------------------------------------------------
const playerHooks = {
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
    clearEmotion(u.id); // the reply is over (played out, or cut): its emotion with it
    setSpeaking(player.speaking);
  },
};
const makePlayer = () => (fc.transport === "webrtc" ? new RtcPlayer(ctx, playerHooks) : new Player(ctx, playerHooks));
let player = makePlayer();
const liveFace = new LiveFace(); // puppet and lip-sync: face frames of the player's own voice
setInterval(() => {
  player.tick();
  if (now() - lastDraw > 100) updateFace(); // keep state current even when frames are not painted
  keepListening();
  renderListening();
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
      onWelcome(msg);
      break;
    case "transcript":
      onTranscript(msg);
      break;
    case "utterance_start":
      if (AUDIO_DRIVEN.includes(fc.welcome?.workflow)) {
        liveFace.begin(msg.utterance); // face frames of the player's own voice; no audio comes
        break;
      }
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
      setEmotion(msg.utterance, msg.emotion);
      break;
    case "utterance_end":
      if (AUDIO_DRIVEN.includes(fc.welcome?.workflow)) liveFace.end(msg.utterance);
      else player.end(msg.utterance, msg.samples); // the badge clears when its audio has played
      break;
    case "clear_buffer":
      player.clear(msg.utterance);
      clearEmotion(msg.utterance);
      break;
    case "error":
      onError(msg);
      break;
    case "timing":
      renderServerTiming(msg);
      break;
    case "audio_onset": // WebRTC only: where the utterance's first voiced sample is (rtc.js)
      if (player.onset) player.onset(msg.utterance, msg.onset);
      break;
    case "failover": // a service (or the speech-to-speech model) was replaced by the next one; nothing was lost
      addNote(
        msg.event === "restored"
          ? `${msg.role}: back on ${msg.to_url}.`
          : `${msg.role} moved from ${msg.from_url} to ${msg.to_url}${msg.reason ? ` (${msg.reason})` : ""}.`,
      );
      break;
    default:
      break; // pong, and fields or types a newer server adds
  }
}

function onWelcome(msg) {
  fc.welcome = msg;
  fc.sessions += 1;
  // Replies of an earlier session are over; its utterance numbers start again from 1 in this one.
  player.reset();
  liveFace.stop();
  clearEmotion();
  pane.forgetUtterances();
  fc.serverTurns = msg.turns === "server";
  setStatus("connected", `engine protocol v${msg.version}, audio ${msg.audio.rate} Hz, ${msg.workflow}`);
  loadCharacters();
}

/**
 * The hello was refused (before any welcome): a character the server no longer has, or a workflow it cannot
 * run (puppet and lip-sync need the audio-driven face model). Say so, drop that choice and start again.
 * Returns whether it handled the error.
 */
function onHelloRefused(msg) {
  if (fc.welcome !== null || !conn.ready) return false;
  if (fc.character && msg.code === "bad_message" && /character/i.test(msg.message)) {
    addNote(`The character “${fc.character}” is not available (${msg.message}); talking to the server's default.`);
    fc.character = "";
  } else if (fc.workflow !== "conversation" && msg.code === "bad_config") {
    addNote(`The ${fc.workflow} workflow is not available on this server (${msg.message}); back to conversation.`);
    fc.workflow = "conversation";
  } else {
    return false;
  }
  savePrefs(fc);
  renderChoices(fc);
  restartSession();
  return true;
}

/** The reply's emotion on the badge, until that reply has played (or is cleared). */
function setEmotion(utterance, emotion) {
  fc.emotion = emotion === "neutral" ? null : { utterance, emotion };
  $("emotion").textContent = fc.emotion ? emotion : "";
}

function clearEmotion(utterance) {
  if (fc.emotion && utterance !== undefined && fc.emotion.utterance !== utterance) return;
  fc.emotion = null;
  $("emotion").textContent = "";
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
    if (liveFace.add(packet.utterance, packet.start, packet.count, packet.width, packet.values, now())) return;
    stage("first_face", packet.utterance);
    const due = player.dueTime(packet.utterance, packet.start);
    if (due !== null) {
      const lateMs = (audibleTime() - due) * 1000;
      fc.sync.push({ transport: fc.transport, utterance: packet.utterance, start: packet.start, lateMs });
      if (fc.sync.length > 5000) fc.sync.shift();
    }
    player.addFace(packet.utterance, packet.start, packet.count, packet.width, packet.values);
  }
}

function onTranscript(msg) {
  if (!msg.typed) lastHeardAt = msg.final ? -Infinity : now(); // "hearing you" while partials arrive
  if (msg.final) {
    const live = $("transcript").querySelector(".line.partial");
    if (live) live.remove();
    if (!msg.typed) {
      const pending = fc.turn && fc.turn.kind !== "typed" && fc.turn.stages.transcript === undefined;
      if (!pending || fc.talking) {
        // a final we did not ask for: the server detected the end of the turn itself (VAD)
        startTurn("server", lastVoiceAt || now());
        talkTurnStarted = true;
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
  if (onHelloRefused(msg)) return;
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

// -- transcript pane, banners ---------------------------------------------------------------------------
const pane = new TranscriptPane($("transcript"), $("empty-hint"), fc.transcript);
const addLine = (who, text, options) => pane.add(who, text, options);
const addNote = (text) => pane.note(text);
const markInterrupted = (id) => pane.markInterrupted(id);
const banners = new Banners($("banner"));
const showBanner = (key, text) => banners.show(key, text);
const hideBanner = (key) => banners.hide(key);
const capitalise = (s) => s.charAt(0).toUpperCase() + s.slice(1);

// -- microphone -----------------------------------------------------------------------------------------
let micOffset = 0;
let turnMicSamples = 0;
let lastVoiceAt = 0;
let lastHeardAt = -Infinity; // the last partial transcript of the player's speech (-Infinity after its final)
let talkTurnStarted = false; // the server ended a turn while the talk button was still held

const mic = new Mic(ctx, {
  rate: micRate,
  prerollMs: 700,
  onChunk: (pcm) => {
    if (!conn.ready || fc.welcome === null) return; // audio only inside an accepted session
    conn.sendBinary(encodeMic(micOffset, pcm));
    micOffset += pcm.length;
    turnMicSamples += pcm.length;
    fc.counters.micChunks += 1;
    fc.counters.micSamples += pcm.length;
  },
  onLevel: (rms) => {
    if (rms > VOICE_RMS) lastVoiceAt = now();
    $("level").style.width = `${Math.min(100, Math.sqrt(rms) * 250)}%`;
  },
});

function micFailed(err) {
  const message = err instanceof MicError ? err.message : `The microphone could not be opened (${err}).`;
  fc.micError = { reason: err.reason || "failed", message };
  showBanner("mic", message);
  $("talk").disabled = true;
  if (fc.handsFree) setHandsFree(false); // back to a hold-to-talk session: typing still works there
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
  // The session's turns are the client's: this end_of_speech, and nothing else, ends the player's turn.
  if (turnMicSamples > 0 && send({ type: "end_of_speech" }) && !talkTurnStarted && !audioDriven()) {
    startTurn("voice");
  }
}

/**
 * Hands-free (the server's VAD finds the turns: `turns: "server"`) or hold-to-talk (`turns: "client"`).
 * The hello fixes the turns for the session, so a change opens a new session.
 */
async function setHandsFree(on) {
  const changed = fc.handsFree !== on;
  fc.handsFree = on;
  renderChoices(fc);
  if (changed) {
    savePrefs(fc);
    restartSession();
  }
  if (!on) {
    mic.mute();
    return;
  }
  resumeAudio();
  try {
    await mic.ensureOpen();
  } catch (err) {
    micFailed(err);
  }
}

/** Hands-free: stream the microphone whenever a session is open (the server hears the turns and barge-ins). */
function keepListening() {
  if (!fc.handsFree || !mic.open) return;
  if (fc.welcome !== null && !mic.listening) {
    turnMicSamples = 0;
    mic.listen();
  } else if (fc.welcome === null && mic.listening) {
    mic.mute(); // between sessions: the pre-roll keeps the last moment for the next one
  }
}

/** The listening indicator: is the microphone live, and is the server hearing speech (partials)? */
function renderListening() {
  let state = "off";
  if (mic.listening && conn.ready && fc.welcome !== null) state = now() - lastHeardAt < HEARING_MS ? "hearing" : "live";
  if (state === fc.listening) return;
  fc.listening = state;
  const el = $("listening");
  el.dataset.state = state;
  el.hidden = state === "off";
  $("listening-text").textContent = state === "hearing" ? "Hearing you…" : "Listening";
}

// -- session choices: mode, workflow, character ------------------------------------------------------------
/** End this session and open one with the current choices (a hello's turns, workflow and character are
 * fixed for its session). What was playing stops; the transcript stays. */
function restartSession() {
  if (fc.talking) {
    fc.talking = false;
    document.body.classList.remove("talking");
  }
  mic.mute();
  if (player.stopAll()) markInterrupted(); // its playback_finished still goes to the old session
  liveFace.stop();
  clearEmotion();
  stopTurnTimers();
  renderLatency();
  fc.welcome = null;
  fc.serverTurns = false;
  conn.restart();
}

/** The server's characters into the selector (on each welcome: the list may change when it restarts). */
async function loadCharacters() {
  const names = await fetchCharacters(pageParams.get("token"));
  if (names === null) return; // an older server without the list: the selector stays hidden
  fc.characters = names;
  renderCharacters(fc, names);
}

/** WebSocket or WebRTC: a new connection (and player) of that kind, and a new session on it. */
function setTransport(value) {
  if (value !== "webrtc" && value !== "websocket") return;
  if (value === fc.transport) return;
  saveTransport(value);
  conn.close();
  player.reset();
  fc.transport = value;
  $("transport").value = value;
  conn = makeConnection();
  player = makePlayer();
  restartSession();
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
  const live = player.faceAt(audibleTime()) || liveFace.at(t);
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
  const typing = (el) => el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT") &&
    el.type !== "checkbox";
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
  $("workflow").addEventListener("change", (event) => {
    if (!WORKFLOWS.includes(event.target.value) || event.target.value === fc.workflow) return;
    fc.workflow = event.target.value;
    savePrefs(fc);
    renderChoices(fc);
    restartSession();
  });
  $("character").addEventListener("change", (event) => {
    if (event.target.value === fc.character) return;
    fc.character = event.target.value;
    savePrefs(fc);
    renderChoices(fc);
    restartSession();
  });
  $("typed").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("text");
    if (sendText(input.value)) input.value = "";
  });
  $("status").addEventListener("click", () => conn.retryNow());
  $("transport").value = fc.transport;
  $("transport").addEventListener("change", (event) => setTransport(event.target.value));
  fc.api = {
    pressTalk, releaseTalk, sendText, setHandsFree, bargeIn, restartSession, retry: () => conn.retryNow(),
    setTransport,
  };
  loadPrefs(fc);
  renderChoices(fc);
  renderLatency();
  requestAnimationFrame(frame);
  conn.connect();
  if (fc.handsFree) mic.ensureOpen().catch(micFailed); // hands-free chosen on an earlier visit
  if (ctx.state !== "running") {
    // Browsers start audio only after a gesture; the first click or key press turns it on.
    setTimeout(() => {
      if (ctx.state !== "running") showBanner("sound", "Click anywhere on the page to turn the sound on.");
    }, 400);
  }
  fc.ready = true;
}

init();
