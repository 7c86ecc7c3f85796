// Reply playback on the AudioContext clock, with a small jitter buffer, and the face frames that go with it.
//
// Each utterance has a timeline: a list of segments {sample, time} mapping its sample positions to
// AudioContext times. The first chunk starts `leadS` after it arrives; later chunks follow contiguously.
// A chunk that arrives too late to be contiguous (an underrun) opens a new segment `leadS` ahead, so the
// position simply pauses during the gap. Face frame i is shown when the audible position reaches
// round(i * rate / 60): it is looked up from the same timeline, so voice and face share one clock.

import { FACE_WIDTH, FPS } from "./protocol.js";

const LATE_MARGIN_S = 0.01;

class Utterance {
  constructor(id, rate, channels) {
    this.id = id;
    this.rate = rate;
    this.channels = channels;
    this.segments = [];
    this.received = 0; // samples (per channel) received and scheduled
    this.sources = new Set();
    this.frames = []; // frame index -> Float32Array(68)
    this.framesReceived = 0;
    this.ended = false; // utterance_end received
    this.expectedSamples = null;
    this.started = false; // playback_started sent
    this.startTime = null; // AudioContext time of the first sample
    this.finished = false;
    this.underruns = 0;
    this.endTime = null;
  }

  timeOf(sample) {
    const segs = this.segments;
    let seg = segs[0];
    for (const s of segs) if (s.sample <= sample) seg = s;
    return seg.time + (sample - seg.sample) / this.rate;
  }

  /** Audible sample position at AudioContext time t (-1 before the first sample). */
  positionAt(t) {
    const segs = this.segments;
    if (!segs.length || t < segs[0].time) return -1;
    let k = 0;
    while (k + 1 < segs.length && segs[k + 1].time <= t) k++;
    const limit = k + 1 < segs.length ? segs[k + 1].sample : this.received;
    return Math.min(limit, segs[k].sample + (t - segs[k].time) * this.rate);
  }

  get scheduledEnd() {
    return this.segments.length ? this.timeOf(this.received) : null;
  }
}

// What the two players (Player here, RtcPlayer in rtc.js) share. `player` keeps `utterances` (id -> its state,
// with `id` and `finished`), the `dropped` ids whose late messages are ignored, and `stop(u, interrupted)`.

/** Stop and drop utterance `id`'s queued audio and face (clear_buffer, or a local barge-in). */
export function clearUtterance(player, id) {
  player.dropped.add(id);
  const u = player.utterances.get(id);
  if (u && !u.finished) player.stop(u, true);
}

/** Stop everything that plays or is queued (barge-in). Returns whether anything was playing. */
export function stopAllUtterances(player) {
  let any = false;
  for (const u of player.utterances.values()) {
    if (!u.finished) {
      any = true;
      player.dropped.add(u.id);
      player.stop(u, true);
    }
  }
  return any;
}

/** A new session: stop everything, and forget its utterance ids. Returns whether anything was playing. */
export function resetPlayer(player) {
  const any = stopAllUtterances(player);
  player.utterances.clear();
  player.dropped.clear();
  return any;
}

/** Keep `count` face frames of utterance `id` from frame `start` (`width` values each, cut or padded to
 * FACE_WIDTH); frames of an unknown or finished utterance only count as ignored in `stats`. */
export function addFaceFrames(player, id, start, count, width, values) {
  const u = player.utterances.get(id);
  if (!u || u.finished) {
    player.stats.ignored += 1;
    return;
  }
  for (let k = 0; k < count; k++) {
    const frame = new Float32Array(FACE_WIDTH);
    frame.set(values.subarray(k * width, k * width + Math.min(width, FACE_WIDTH)));
    u.frames[start + k] = frame;
  }
  u.framesReceived += count;
  player.stats.faceFrames += count;
  player.stats.facePackets += 1;
}

/**
 * The face frame for audible time t: {utterance, index, values} interpolated between neighbouring frames,
 * or null when nothing plays or its frame has not arrived (utterances with `started`, `rate`, `frames` and
 * `positionAt(t)`).
 */
export function faceOf(player, t) {
  for (const u of player.utterances.values()) {
    if (u.finished || !u.started) continue;
    const pos = u.positionAt(t);
    if (pos < 0) continue;
    const f = (pos * FPS) / u.rate;
    const i = Math.floor(f);
    const a = u.frames[i];
    if (!a) return null;
    const b = u.frames[i + 1];
    if (!b) return { utterance: u.id, index: i, values: a };
    const w = f - i;
    const out = new Float32Array(FACE_WIDTH);
    for (let k = 0; k < FACE_WIDTH; k++) out[k] = a[k] + (b[k] - a[k]) * w;
    return { utterance: u.id, index: i, values: out };
  }
  return null;
}

export class Player {
  /**
   * @param {AudioContext} ctx
   * @param {{onStarted: (u: Utterance, at: number) => void,
   *          onFinished: (u: Utterance, position: number, interrupted: boolean) => void,
   *          audibleTime: () => number, leadS?: number}} hooks
   */
  constructor(ctx, hooks) {
    this.ctx = ctx;
    this.hooks = hooks;
    this.leadS = hooks.leadS ?? 0.08;
    this.utterances = new Map();
    this.dropped = new Set();
    this.output = ctx.createGain();
    this.output.connect(ctx.destination);
    this.stats = { chunks: 0, samples: 0, seconds: 0, faceFrames: 0, facePackets: 0, underruns: 0, ignored: 0 };
  }

  /** The utterance being heard, or the next one queued. */
  get current() {
    for (const u of this.utterances.values()) if (!u.finished) return u;
    return null;
  }

  get speaking() {
    return this.current !== null;
  }

  begin(id, rate, channels) {
    if (this.dropped.has(id) || this.utterances.has(id)) return;
    // A new utterance replaces any older one that never got its utterance_end (that reply was cancelled).
    for (const u of this.utterances.values()) if (!u.ended && !u.finished) this.stop(u, true);
    this.utterances.set(id, new Utterance(id, rate, channels));
  }

  addAudio(id, offset, pcm) {
    const u = this.utterances.get(id);
    if (!u || u.finished) {
      this.stats.ignored += 1;
      return;
    }
    const n = pcm.length / u.channels;
    if (!n) return;
    const buffer = this.ctx.createBuffer(u.channels, n, u.rate);
    for (let c = 0; c < u.channels; c++) {
      const data = buffer.getChannelData(c);
      for (let i = 0; i < n; i++) data[i] = pcm[i * u.channels + c] / 32768;
    }
    const now = this.ctx.currentTime;
    if (!u.segments.length) {
      // Queue behind an utterance still playing, else start after the jitter lead.
      let at = now + this.leadS;
      for (const other of this.utterances.values()) {
        if (other !== u && !other.finished && other.scheduledEnd !== null) at = Math.max(at, other.scheduledEnd);
      }
      u.segments.push({ sample: offset, time: at });
      u.startTime = at;
    } else if (offset !== u.received || u.timeOf(offset) < now + LATE_MARGIN_S) {
      u.segments.push({ sample: offset, time: now + this.leadS });
      u.underruns += 1;
      this.stats.underruns += 1;
    }
    const when = u.timeOf(offset);
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output);
    source.onended = () => u.sources.delete(source);
    source.start(when);
    u.sources.add(source);
    u.received = offset + n;
    this.stats.chunks += 1;
    this.stats.samples += n;
    this.stats.seconds += n / u.rate;
  }

  addFace(id, start, count, width, values) {
    addFaceFrames(this, id, start, count, width, values);
  }

  /** AudioContext time at which face frame `index` of utterance `id` plays (null: its audio is not scheduled). */
  dueTime(id, index) {
    const u = this.utterances.get(id);
    if (!u || !u.segments.length) return null;
    return u.timeOf(Math.round((index * u.rate) / FPS));
  }

  end(id, samples) {
    const u = this.utterances.get(id);
    if (!u) return;
    u.ended = true;
    u.expectedSamples = samples;
    if (!u.segments.length) this.finish(u, 0, false); // an utterance without audio
  }

  /** clear_buffer (or a local barge-in): stop and drop the utterance's queued audio and face. */
  clear(id) {
    clearUtterance(this, id);
  }

  /** Stop everything that plays or is queued (barge-in). Returns whether anything was playing. */
  stopAll() {
    return stopAllUtterances(this);
  }

  /** A new session: stop everything, and forget its utterance ids (the next session numbers from 1 again). */
  reset() {
    return resetPlayer(this);
  }

  stop(u, interrupted) {
    const t = this.hooks.audibleTime();
    const position = Math.max(0, Math.round(u.positionAt(t)));
    for (const source of u.sources) {
      try {
        source.stop();
      } catch {
        // already stopped
      }
    }
    u.sources.clear();
    this.finish(u, position, interrupted);
  }

  finish(u, position, interrupted) {
    if (u.finished) return;
    u.finished = true;
    u.endTime = this.ctx.currentTime;
    u.frames = [];
    this.hooks.onFinished(u, position, interrupted);
    // Keep a few finished utterances for the page's statistics, drop the rest.
    const done = [...this.utterances.values()].filter((x) => x.finished);
    for (const old of done.slice(0, Math.max(0, done.length - 8))) this.utterances.delete(old.id);
  }

  /** Called often (every ~10 ms): acknowledges starts and ends on the audible clock. */
  tick() {
    const t = this.hooks.audibleTime();
    for (const u of this.utterances.values()) {
      if (u.finished || !u.segments.length) continue;
      if (!u.started && t >= u.startTime) {
        u.started = true;
        this.hooks.onStarted(u, t);
      }
      if (u.started && u.ended && u.positionAt(t) >= u.received) this.finish(u, u.received, false);
    }
  }

  /**
   * The face frame for audible time t: {utterance, index, values} interpolated between neighbouring
   * frames, or null when nothing plays or its frame has not arrived.
   */
  faceAt(t) {
    return faceOf(this, t);
  }
}

/**
 * Face frames without reply audio: the `puppet` and `lipsync` workflows animate the player's own voice, so
 * there is nothing to play. Frames are shown on the clock of their arrival: frame `start` of the first packet
 * at its arrival time plus `leadS`, the next ones 1/60 s apart, holding the newest frame when the stream runs
 * late and going idle when it has stopped for `staleS`.
 */
export class LiveFace {
  constructor({ leadS = 0.05, staleS = 0.25 } = {}) {
    this.leadS = leadS;
    this.staleS = staleS;
    this.stop();
  }

  begin(id) {
    this.id = id;
    this.frames = new Map();
    this.t0 = null; // performance.now() ms of frame `s0`
    this.s0 = 0;
    this.newest = -1;
    this.ended = false;
  }

  add(id, start, count, width, values, t) {
    if (id !== this.id) return false;
    if (this.t0 === null) {
      this.t0 = t;
      this.s0 = start;
    }
    for (let k = 0; k < count; k++) {
      const frame = new Float32Array(FACE_WIDTH);
      frame.set(values.subarray(k * width, k * width + Math.min(width, FACE_WIDTH)));
      this.frames.set(start + k, frame);
    }
    this.newest = Math.max(this.newest, start + count - 1);
    return true;
  }

  end(id) {
    if (id === this.id) this.ended = true;
  }

  stop() {
    this.id = null;
    this.frames = new Map();
    this.t0 = null;
    this.newest = -1;
    this.ended = false;
  }

  /** {utterance, index, values} for performance time t (ms), or null (nothing streams: the idle face). */
  at(t) {
    if (this.id === null || this.t0 === null) return null;
    const wanted = Math.floor(this.s0 + ((t - this.t0) / 1000 - this.leadS) * FPS);
    if (wanted < this.s0) return null;
    const late = wanted - this.newest;
    if (late > this.staleS * FPS || (this.ended && late > 0)) return null;
    const index = Math.min(wanted, this.newest);
    for (const key of this.frames.keys()) {
      if (key >= index - FPS) break;
      this.frames.delete(key); // keep one second behind: a hands-free puppet streams for hours
    }
    const values = this.frames.get(index);
    return values ? { utterance: this.id, index, values } : null;
  }
}
