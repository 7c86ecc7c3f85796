// Engine WebSocket protocol v1 (docs/protocol.md): JSON text messages and binary frames behind a fixed
// 16-byte little-endian header. Pure functions, no I/O.

export const VERSION = 1;
export const KIND_MIC = 1;
export const KIND_AUDIO = 2;
export const KIND_FACE = 3;
export const FPS = 60;
export const FACE_WIDTH = 68;
export const HEADER_BYTES = 16;
export const RATES = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000];

// The 68 values of a face frame, in frame order (facecast.face.arkit.FRAME_NAMES).
export const FRAME_NAMES = Object.freeze([
  "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
  "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
  "EyeSquintRight", "EyeWideRight", "JawForward", "JawLeft", "JawRight", "JawOpen", "MouthClose",
  "MouthFunnel", "MouthPucker", "MouthLeft", "MouthRight", "MouthSmileLeft", "MouthSmileRight",
  "MouthFrownLeft", "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft",
  "MouthStretchRight", "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper",
  "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft",
  "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight",
  "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
  "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw",
  "RightEyePitch", "RightEyeRoll", "Angry", "Disgusted", "Fearful", "Happy", "Neutral", "Sad", "Surprised",
]);

export const INDEX = Object.freeze(Object.fromEntries(FRAME_NAMES.map((name, i) => [name, i])));

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The supported rate nearest to `rate` (the page asks the server for exactly its AudioContext's rate). */
export function nearestRate(rate) {
  return RATES.reduce((best, r) => (Math.abs(r - rate) < Math.abs(best - rate) ? r : best), RATES[0]);
}

/** A kind-1 microphone frame: header + PCM16 samples (mono). */
export function encodeMic(offset, samples) {
  const buffer = new ArrayBuffer(HEADER_BYTES + samples.length * 2);
  const view = new DataView(buffer);
  view.setUint8(0, KIND_MIC);
  view.setUint8(1, VERSION);
  view.setUint16(2, 0, true);
  view.setUint32(4, 0, true);
  view.setBigUint64(8, BigInt(offset), true);
  if (LITTLE_ENDIAN) {
    new Int16Array(buffer, HEADER_BYTES).set(samples);
  } else {
    for (let i = 0; i < samples.length; i++) view.setInt16(HEADER_BYTES + 2 * i, samples[i], true);
  }
  return buffer;
}

/**
 * Decode a server binary frame. Returns
 *   {kind: 2, utterance, offset, pcm: Int16Array} or
 *   {kind: 3, utterance, start, count, width, values: Float32Array (count x width)};
 * throws Error for a malformed frame.
 */
export function decodeBinary(buffer) {
  if (buffer.byteLength < HEADER_BYTES) throw new Error(`binary frame of ${buffer.byteLength} bytes is too short`);
  const view = new DataView(buffer);
  const kind = view.getUint8(0);
  const version = view.getUint8(1);
  if (version !== VERSION) throw new Error(`binary frame version ${version}, expected ${VERSION}`);
  const utterance = view.getUint32(4, true);
  const payload = buffer.byteLength - HEADER_BYTES;
  if (kind === KIND_AUDIO || kind === KIND_MIC) {
    if (payload % 2) throw new Error("odd PCM16 payload");
    const offset = Number(view.getBigUint64(8, true));
    let pcm;
    if (LITTLE_ENDIAN) pcm = new Int16Array(buffer, HEADER_BYTES, payload / 2);
    else {
      pcm = new Int16Array(payload / 2);
      for (let i = 0; i < pcm.length; i++) pcm[i] = view.getInt16(HEADER_BYTES + 2 * i, true);
    }
    return { kind, utterance, offset, pcm };
  }
  if (kind === KIND_FACE) {
    const start = view.getUint32(8, true);
    const count = view.getUint16(12, true);
    const width = view.getUint16(14, true);
    if (payload !== count * width * 4) throw new Error(`face frame payload ${payload} != ${count} x ${width} x 4`);
    let values;
    if (LITTLE_ENDIAN) values = new Float32Array(buffer, HEADER_BYTES, count * width);
    else {
      values = new Float32Array(count * width);
      for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(HEADER_BYTES + 4 * i, true);
    }
    return { kind, utterance, start, count, width, values };
  }
  throw new Error(`unknown binary frame kind ${kind}`);
}
