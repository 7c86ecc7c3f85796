// A stylised face drawn on a Canvas 2D from the 68 ARKit values of a face frame, plus a client-side idle
// animation for when no utterance plays (the server sends face frames only during utterances).
//
// Conventions (facecast.face.layers): curves 0-51 are weights in [0, 1]; HeadYaw/Pitch/Roll and the eye
// rotations are degrees / 180; positive yaw turns toward the character's own left (the viewer's right),
// positive pitch looks down. "Left" curves are the character's left, drawn on the viewer's right.

import { FACE_WIDTH, INDEX as I } from "./protocol.js";

const clamp = (x, lo = 0, hi = 1) => (x < lo ? lo : x > hi ? hi : x);
const lerp = (a, b, w) => a + (b - a) * w;

/** How open the lips are, 0 (closed) to 1 (wide open): the value the mouth is drawn with. */
export function mouthOpenness(v) {
  const lower = (v[I.MouthLowerDownLeft] + v[I.MouthLowerDownRight]) / 2;
  const upper = (v[I.MouthUpperUpLeft] + v[I.MouthUpperUpRight]) / 2;
  const roll = (v[I.MouthRollLower] + v[I.MouthRollUpper]) / 2;
  const press = (v[I.MouthPressLeft] + v[I.MouthPressRight]) / 2;
  const lips = v[I.JawOpen] - v[I.MouthClose] + 0.35 * lower + 0.25 * upper - 0.3 * roll - 0.2 * press;
  return clamp(lips * 1.25);
}

// -- idle -----------------------------------------------------------------------------------------------

/** Gentle life when no utterance plays: blinks, small gaze shifts, head sway, breathing, a hint of a smile. */
export class IdleAnimator {
  constructor(seed = 1) {
    this.seed = seed;
    this.nextBlink = 1.2;
    this.blinkStart = -10;
    this.doubleBlink = false;
    this.gaze = [0, 0];
    this.gazeFrom = [0, 0];
    this.gazeAt = 0;
    this.nextGaze = 1.5;
  }

  random() {
    // mulberry32: deterministic, so a test (or a screenshot) sees the same idle every time
    let t = (this.seed += 0x6d2b79f5);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  frame(t) {
    const v = new Float32Array(FACE_WIDTH);
    // blinks: fast close, slower open
    if (t >= this.nextBlink) {
      this.blinkStart = t;
      this.doubleBlink = this.random() < 0.2;
      this.nextBlink = t + 2 + this.random() * 4;
    }
    const blinkOne = (dt) => (dt < 0 || dt > 0.26 ? 0 : dt < 0.08 ? dt / 0.08 : dt < 0.11 ? 1 : 1 - (dt - 0.11) / 0.15);
    let blink = blinkOne(t - this.blinkStart);
    if (this.doubleBlink) blink = Math.max(blink, blinkOne(t - this.blinkStart - 0.3));
    v[I.EyeBlinkLeft] = blink;
    v[I.EyeBlinkRight] = clamp(blinkOne(t - this.blinkStart - 0.008) || blink);
    // gaze: fixations joined by quick saccades
    if (t >= this.nextGaze) {
      this.gazeFrom = this.currentGaze(t);
      this.gaze = [(this.random() - 0.5) * 0.5, (this.random() - 0.5) * 0.3];
      this.gazeAt = t;
      this.nextGaze = t + 0.8 + this.random() * 2.5;
    }
    const [gx, gy] = this.currentGaze(t);
    v[I.EyeLookOutLeft] = v[I.EyeLookInRight] = clamp(gx);
    v[I.EyeLookInLeft] = v[I.EyeLookOutRight] = clamp(-gx);
    v[I.EyeLookDownLeft] = v[I.EyeLookDownRight] = clamp(gy);
    v[I.EyeLookUpLeft] = v[I.EyeLookUpRight] = clamp(-gy);
    v[I.EyeBlinkLeft] = clamp(v[I.EyeBlinkLeft] + 0.15 * clamp(gy));
    v[I.EyeBlinkRight] = clamp(v[I.EyeBlinkRight] + 0.15 * clamp(gy));
    // head: slow sway and breathing (degrees / 180)
    const breath = Math.sin(t * 2 * Math.PI * 0.22);
    v[I.HeadYaw] = (2.5 * Math.sin(t * 0.41) + 1.2 * Math.sin(t * 0.97 + 1)) / 180;
    v[I.HeadPitch] = (1.2 * breath + 1.0 * Math.sin(t * 0.53 + 2)) / 180;
    v[I.HeadRoll] = (2.0 * Math.sin(t * 0.31 + 0.5)) / 180;
    v[I.MouthSmileLeft] = v[I.MouthSmileRight] = 0.12 + 0.04 * Math.sin(t * 0.2);
    v[I.BrowInnerUp] = 0.08 + 0.06 * Math.max(0, Math.sin(t * 0.37));
    v[I.Neutral] = 1;
    return v;
  }

  currentGaze(t) {
    const w = clamp((t - this.gazeAt) / 0.06);
    const e = w * w * (3 - 2 * w);
    return [lerp(this.gazeFrom[0], this.gaze[0], e), lerp(this.gazeFrom[1], this.gaze[1], e)];
  }
}

// -- drawing --------------------------------------------------------------------------------------------

const SKIN = "#f2c7a5";
const SKIN_SHADE = "#d99f7e";
const SKIN_LINE = "#a8674d";
const HAIR = "#3a2a33";
const HAIR_LIGHT = "#5b4150";
const LIP = "#c8566a";
const LIP_DARK = "#9c3a4f";
const IRIS = "#3f7f8c";
const MOUTH_IN = "#4a1826";

/** Draws the face of `values` (68 floats) onto a canvas, scaled to fit it. */
export class FaceRenderer {
  constructor(canvas) {
    this.canvas = canvas;
    this.g = canvas.getContext("2d");
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const { clientWidth: w, clientHeight: h } = this.canvas;
    const width = Math.max(1, Math.round(w * dpr));
    const height = Math.max(1, Math.round(h * dpr));
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
  }

  draw(v) {
    this.resize();
    const g = this.g;
    const { width, height } = this.canvas;
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, width, height);
    // design space: 400 x 460, centred
    const s = Math.min(width / 400, height / 460);
    g.setTransform(s, 0, 0, s, (width - 400 * s) / 2, (height - 460 * s) / 2);

    const deg = (x) => clamp(x * 180, -35, 35);
    const yaw = deg(v[I.HeadYaw]);
    const pitch = deg(v[I.HeadPitch]);
    const roll = deg(v[I.HeadRoll]);
    const p = {
      fx: yaw * 1.5, // feature shift from head yaw (parallax: features move more than the outline)
      fy: pitch * 1.3,
      jaw: clamp(v[I.JawOpen]),
      happy: clamp(v[I.Happy]),
    };

    this.shoulders(g, yaw);
    g.save();
    // the head pivots at the neck
    g.translate(200 + yaw * 0.6, 400 + pitch * 0.3);
    g.rotate((-roll * Math.PI) / 180);
    g.translate(-200, -400);
    this.hairBack(g, p);
    this.ears(g, p, yaw);
    this.head(g, v, p);
    this.cheeks(g, v, p);
    this.eye(g, v, p, +1);
    this.eye(g, v, p, -1);
    this.brow(g, v, p, +1);
    this.brow(g, v, p, -1);
    this.nose(g, v, p);
    this.mouth(g, v, p);
    this.hairFront(g, p);
    g.restore();
  }

  shoulders(g, yaw) {
    const x = 200 + yaw * 0.3;
    g.fillStyle = SKIN_SHADE;
    g.beginPath();
    g.moveTo(x - 46, 360);
    g.lineTo(x - 50, 440);
    g.lineTo(x + 50, 440);
    g.lineTo(x + 46, 360);
    g.closePath();
    g.fill();
    const shirt = g.createLinearGradient(0, 410, 0, 460);
    shirt.addColorStop(0, "#3d6b8f");
    shirt.addColorStop(1, "#2c4f6b");
    g.fillStyle = shirt;
    g.beginPath();
    g.moveTo(x - 175, 470);
    g.bezierCurveTo(x - 165, 430, x - 120, 412, x - 52, 404);
    g.quadraticCurveTo(x, 446, x + 52, 404);
    g.bezierCurveTo(x + 120, 412, x + 165, 430, x + 175, 470);
    g.closePath();
    g.fill();
  }

  hairBack(g, p) {
    g.fillStyle = HAIR;
    g.beginPath();
    g.ellipse(200 + p.fx * 0.1, 200, 150, 168, 0, Math.PI, 2 * Math.PI);
    g.lineTo(350, 330);
    g.quadraticCurveTo(330, 372, 300, 370);
    g.lineTo(100, 370);
    g.quadraticCurveTo(70, 372, 50, 330);
    g.closePath();
    g.fill();
  }

  ears(g, p, yaw) {
    for (const side of [-1, 1]) {
      const x = 200 + side * (124 - side * yaw * 0.4);
      g.fillStyle = SKIN_SHADE;
      g.beginPath();
      g.ellipse(x, 236 + p.fy * 0.3, 17, 30, side * 0.15, 0, 2 * Math.PI);
      g.fill();
      g.fillStyle = SKIN;
      g.beginPath();
      g.ellipse(x + side * 2, 236 + p.fy * 0.3, 10, 21, side * 0.15, 0, 2 * Math.PI);
      g.fill();
    }
  }

  head(g, v, p) {
    const puff = clamp(v[I.CheekPuff]) * 10;
    const chin = 392 + p.jaw * 30 + p.fy * 0.2;
    const jx = (v[I.JawLeft] - v[I.JawRight]) * 14 + p.fx * 0.15;
    const grad = g.createRadialGradient(200 + p.fx * 0.5, 210 + p.fy * 0.3, 30, 200, 240, 190);
    grad.addColorStop(0, "#f8d5b8");
    grad.addColorStop(0.7, SKIN);
    grad.addColorStop(1, SKIN_SHADE);
    g.fillStyle = grad;
    g.strokeStyle = SKIN_LINE;
    g.lineWidth = 2;
    g.beginPath();
    g.moveTo(200, 62);
    g.bezierCurveTo(280, 62, 330, 120, 330, 205);
    g.bezierCurveTo(330 + puff, 280, 318 + puff, 318, 286 + jx, 352 + p.jaw * 18);
    g.bezierCurveTo(258 + jx, 380 + p.jaw * 26, 232 + jx, chin, 200 + jx, chin);
    g.bezierCurveTo(168 + jx, chin, 142 + jx, 380 + p.jaw * 26, 114 + jx, 352 + p.jaw * 18);
    g.bezierCurveTo(82 - puff, 318, 70 - puff, 280, 70, 205);
    g.bezierCurveTo(70, 120, 120, 62, 200, 62);
    g.closePath();
    g.fill();
    g.stroke();
  }

  cheeks(g, v, p) {
    for (const side of [-1, 1]) {
      const sq = side > 0 ? v[I.CheekSquintLeft] : v[I.CheekSquintRight];
      const smile = side > 0 ? v[I.MouthSmileLeft] : v[I.MouthSmileRight];
      const x = 200 + side * 82 + p.fx * 0.8;
      const y = 292 - 10 * clamp(sq + 0.5 * smile) + p.fy;
      const r = 34 + clamp(v[I.CheekPuff]) * 8;
      const blush = g.createRadialGradient(x, y, 2, x, y, r);
      blush.addColorStop(0, `rgba(232, 110, 120, ${0.28 + 0.25 * p.happy + 0.12 * clamp(smile)})`);
      blush.addColorStop(1, "rgba(232, 110, 120, 0)");
      g.fillStyle = blush;
      g.beginPath();
      g.arc(x, y, r, 0, 2 * Math.PI);
      g.fill();
    }
  }

  eye(g, v, p, side) {
    // side +1: the character's left eye (viewer's right)
    const L = side > 0;
    const blink = clamp(L ? v[I.EyeBlinkLeft] : v[I.EyeBlinkRight]);
    const squint = clamp(L ? v[I.EyeSquintLeft] : v[I.EyeSquintRight]);
    const wide = clamp(L ? v[I.EyeWideLeft] : v[I.EyeWideRight]);
    const cheek = clamp(L ? v[I.CheekSquintLeft] : v[I.CheekSquintRight]);
    const lookOut = L ? v[I.EyeLookOutLeft] : v[I.EyeLookOutRight];
    const lookIn = L ? v[I.EyeLookInLeft] : v[I.EyeLookInRight];
    const lookUp = L ? v[I.EyeLookUpLeft] : v[I.EyeLookUpRight];
    const lookDown = L ? v[I.EyeLookDownLeft] : v[I.EyeLookDownRight];
    const cx = 200 + side * 60 + p.fx;
    const cy = 222 + p.fy;
    const w = 29;
    const open = 1 - blink;
    const top = -(15 + 5 * wide - 4 * squint) * open + 2 * blink; // upper lid height above centre
    const bottom = (11 - 5 * squint - 4 * cheek) * (0.35 + 0.65 * open) + 2 * blink;
    const inner = cx - side * w;
    const outer = cx + side * w;
    const lid = (path) => {
      path.moveTo(inner, cy + 1);
      path.bezierCurveTo(inner + side * 8, cy + top * 1.3, outer - side * 12, cy + top * 1.3, outer, cy - 2);
    };
    const low = (path) => {
      path.bezierCurveTo(outer - side * 10, cy + bottom * 1.3, inner + side * 10, cy + bottom * 1.3, inner, cy + 1);
    };
    if (open > 0.04) {
      g.save();
      g.beginPath();
      lid(g);
      low(g);
      g.closePath();
      g.fillStyle = "#fbfbf7";
      g.fill();
      g.clip();
      // iris follows the gaze (outward = away from the nose)
      const gx = cx + side * 11 * (lookOut - lookIn);
      const gy = cy + 1 + 8 * (lookDown - lookUp);
      const iris = g.createRadialGradient(gx, gy, 2, gx, gy, 13);
      iris.addColorStop(0, "#6fb3bd");
      iris.addColorStop(0.75, IRIS);
      iris.addColorStop(1, "#1f3f48");
      g.fillStyle = iris;
      g.beginPath();
      g.arc(gx, gy, 13, 0, 2 * Math.PI);
      g.fill();
      g.fillStyle = "#141014";
      g.beginPath();
      g.arc(gx, gy, 5.5 + 1.5 * wide, 0, 2 * Math.PI);
      g.fill();
      g.fillStyle = "rgba(255,255,255,0.9)";
      g.beginPath();
      g.arc(gx + 4, gy - 4, 3, 0, 2 * Math.PI);
      g.fill();
      // the upper lid's shadow on the eyeball
      g.fillStyle = "rgba(120, 70, 60, 0.18)";
      g.beginPath();
      lid(g);
      g.lineTo(outer, cy - 40);
      g.lineTo(inner, cy - 40);
      g.closePath();
      g.translate(0, 4);
      g.fill();
      g.restore();
    }
    // upper lid line with lashes
    g.strokeStyle = "#2b1d22";
    g.lineCap = "round";
    g.lineWidth = 4;
    g.beginPath();
    lid(g);
    g.stroke();
    g.lineWidth = 2.5;
    g.beginPath();
    g.moveTo(outer, cy - 2);
    g.lineTo(outer + side * 7, cy - 7 + 3 * blink);
    g.stroke();
    // lower lid and crease
    g.strokeStyle = "rgba(150, 90, 75, 0.55)";
    g.lineWidth = 1.5;
    g.beginPath();
    g.moveTo(outer, cy - 2);
    low(g);
    g.stroke();
    g.beginPath();
    g.moveTo(inner + side * 4, cy + top * 1.1 - 9 - 3 * wide);
    g.quadraticCurveTo(cx, cy + top * 1.25 - 14 - 3 * wide, outer - side * 2, cy + top * 0.8 - 9);
    g.stroke();
  }

  brow(g, v, p, side) {
    const L = side > 0;
    const down = clamp(L ? v[I.BrowDownLeft] : v[I.BrowDownRight]);
    const outerUp = clamp(L ? v[I.BrowOuterUpLeft] : v[I.BrowOuterUpRight]);
    const innerUp = clamp(v[I.BrowInnerUp]);
    const cx = 200 + side * 60 + p.fx;
    const base = 176 + p.fy;
    const innerY = base + 14 * down - 16 * innerUp;
    const outerY = base + 2 + 4 * down - 14 * outerUp;
    const midY = Math.min(innerY, outerY) - 9 + 3 * down;
    const ix = cx - side * (30 - 3 * down);
    const ox = cx + side * 36;
    g.fillStyle = HAIR;
    g.beginPath();
    g.moveTo(ix, innerY + 4);
    g.quadraticCurveTo(cx, midY + 4, ox, outerY + 3);
    g.quadraticCurveTo(cx + side * 6, midY - 5, ix, innerY - 5);
    g.closePath();
    g.fill();
  }

  nose(g, v, p) {
    const x = 200 + p.fx * 1.25;
    const y = 292 + p.fy;
    const sneer = (v[I.NoseSneerLeft] + v[I.NoseSneerRight]) / 2;
    const lift = 4 * sneer;
    // a soft shadow down one side of the bridge, and the tip
    const side = g.createLinearGradient(x - 16, 0, x - 2, 0);
    side.addColorStop(0, "rgba(200, 130, 100, 0)");
    side.addColorStop(1, "rgba(200, 130, 100, 0.35)");
    g.fillStyle = side;
    g.beginPath();
    g.moveTo(x - 6, 246 + p.fy);
    g.quadraticCurveTo(x - 12, y - 16, x - 14, y - 4 - lift);
    g.lineTo(x - 4, y - 6 - lift);
    g.quadraticCurveTo(x - 4, y - 24, x - 2, 246 + p.fy);
    g.closePath();
    g.fill();
    const tip = g.createRadialGradient(x + 1, y - 9 - lift, 1, x, y - 6 - lift, 15);
    tip.addColorStop(0, "rgba(255, 235, 220, 0.55)");
    tip.addColorStop(1, "rgba(255, 235, 220, 0)");
    g.fillStyle = tip;
    g.beginPath();
    g.arc(x, y - 6 - lift, 15, 0, 2 * Math.PI);
    g.fill();
    g.strokeStyle = "rgba(168, 103, 77, 0.75)";
    g.lineWidth = 2;
    g.lineCap = "round";
    g.beginPath();
    g.moveTo(x - 15, y - 6 - lift);
    g.bezierCurveTo(x - 19, y + 2 - lift, x - 10, y + 5 - lift, x - 5, y + 2 - lift);
    g.moveTo(x + 15, y - 6 - lift);
    g.bezierCurveTo(x + 19, y + 2 - lift, x + 10, y + 5 - lift, x + 5, y + 2 - lift);
    g.stroke();
    g.fillStyle = "rgba(140, 80, 65, 0.6)";
    for (const s of [-1, 1]) {
      const n = s > 0 ? v[I.NoseSneerLeft] : v[I.NoseSneerRight];
      g.beginPath();
      g.ellipse(x + s * 8, y + 1 - 4 * n, 3.6, 2, s * 0.35, 0, 2 * Math.PI);
      g.fill();
    }
    if (sneer > 0.2) {
      g.strokeStyle = `rgba(168, 103, 77, ${0.6 * sneer})`;
      for (const s of [-1, 1]) {
        g.beginPath();
        g.moveTo(x + s * 7, 252 + p.fy);
        g.quadraticCurveTo(x + s * 12, 255 + p.fy, x + s * 15, 262 + p.fy);
        g.stroke();
      }
    }
  }

  mouth(g, v, p) {
    const avg = (a, b) => (v[I[a]] + v[I[b]]) / 2;
    const funnel = clamp(v[I.MouthFunnel]);
    const pucker = clamp(v[I.MouthPucker]);
    const roll = avg("MouthRollUpper", "MouthRollLower");
    const press = avg("MouthPressLeft", "MouthPressRight");
    const upperUp = avg("MouthUpperUpLeft", "MouthUpperUpRight");
    const lowerDown = avg("MouthLowerDownLeft", "MouthLowerDownRight");
    const shrug = clamp(v[I.MouthShrugUpper] + v[I.MouthShrugLower]);
    const open = mouthOpenness(v);
    const shift = (v[I.MouthLeft] - v[I.MouthRight]) * 14 + (v[I.JawLeft] - v[I.JawRight]) * 6;
    const x0 = 200 + p.fx * 1.1 + shift;
    const y0 = 336 + p.fy + p.jaw * 6 - 3 * shrug;
    const narrow = 1 - 0.38 * pucker - 0.2 * funnel;
    const corner = (sideName) => {
      const smile = clamp(v[I[`MouthSmile${sideName}`]]);
      const stretch = clamp(v[I[`MouthStretch${sideName}`]]);
      const frown = clamp(v[I[`MouthFrown${sideName}`]]);
      const dimple = clamp(v[I[`MouthDimple${sideName}`]]);
      return {
        w: 44 * narrow * (1 + 0.2 * smile + 0.28 * stretch + 0.08 * dimple),
        y: -16 * smile + 11 * frown - 2 * dimple + 1 * stretch,
      };
    };
    const cl = corner("Left"); // viewer's right
    const cr = corner("Right"); // viewer's left
    const R = { x: x0 + cl.w, y: y0 + cl.y };
    const Lc = { x: x0 - cr.w, y: y0 + cr.y };
    const thick = (1 - 0.7 * roll) * (1 - 0.4 * press) * (1 + 0.6 * pucker + 0.3 * funnel);
    const gap = open * 46;
    const upperIn = y0 - gap * 0.22 - 4 * upperUp; // inner edge of the upper lip
    const lowerIn = y0 + gap * 0.78 + 5 * lowerDown; // inner edge of the lower lip
    const upperOut = upperIn - 11 * thick - 2 * upperUp;
    const lowerOut = lowerIn + 14 * thick;
    const round = 0.55 + 0.45 * clamp(funnel * 1.4 + pucker * 0.6); // 0.55 lens-shaped .. 1 round
    const hw = (R.x - Lc.x) / 2;
    const mx = (R.x + Lc.x) / 2;

    // inner mouth (drawn first, lips over it)
    if (gap > 1.5) {
      const iw = hw * (0.92 - 0.2 * funnel);
      const il = { x: mx - iw, y: (Lc.y + upperIn + lowerIn) / 3 };
      const ir = { x: mx + iw, y: (R.y + upperIn + lowerIn) / 3 };
      g.save();
      g.beginPath();
      g.moveTo(il.x, il.y);
      g.bezierCurveTo(mx - iw * round, upperIn, mx + iw * round, upperIn, ir.x, ir.y);
      g.bezierCurveTo(mx + iw * round, lowerIn, mx - iw * round, lowerIn, il.x, il.y);
      g.closePath();
      g.fillStyle = MOUTH_IN;
      g.fill();
      g.clip();
      // teeth
      g.fillStyle = "#f4f1ea";
      g.beginPath();
      g.ellipse(mx, upperIn - 2, iw * 0.8, 8 + 2 * upperUp, 0, 0, Math.PI);
      g.fill();
      if (gap > 16) {
        g.beginPath();
        g.ellipse(mx, lowerIn + 3, iw * 0.7, 6, 0, Math.PI, 2 * Math.PI);
        g.fill();
      }
      // tongue
      g.fillStyle = "#c2485c";
      g.beginPath();
      g.ellipse(mx, lowerIn + 2 - 6 * clamp(v[I.TongueOut]), iw * 0.6, 9 + gap * 0.12, 0, Math.PI, 2 * Math.PI);
      g.fill();
      g.restore();
    }

    const lipGrad = g.createLinearGradient(0, upperOut, 0, lowerOut);
    lipGrad.addColorStop(0, LIP_DARK);
    lipGrad.addColorStop(0.45, LIP);
    lipGrad.addColorStop(1, "#d56d7c");
    g.fillStyle = lipGrad;
    // upper lip: outer contour with a cupid's bow, inner contour along the opening
    const bow = 3.5 * thick;
    g.beginPath();
    g.moveTo(Lc.x, Lc.y);
    g.bezierCurveTo(Lc.x + hw * 0.35, upperOut + 4, mx - hw * 0.35, upperOut - 1, mx - hw * 0.2, upperOut);
    g.quadraticCurveTo(mx, upperOut + bow, mx + hw * 0.2, upperOut);
    g.bezierCurveTo(mx + hw * 0.35, upperOut - 1, R.x - hw * 0.35, upperOut + 4, R.x, R.y);
    g.bezierCurveTo(mx + hw * round * 0.9, upperIn + 1, mx - hw * round * 0.9, upperIn + 1, Lc.x, Lc.y);
    g.closePath();
    g.fill();
    // lower lip
    g.beginPath();
    g.moveTo(Lc.x, Lc.y);
    g.bezierCurveTo(mx - hw * round * 0.9, lowerIn - 1, mx + hw * round * 0.9, lowerIn - 1, R.x, R.y);
    g.bezierCurveTo(R.x - hw * 0.25, lowerOut + 2, Lc.x + hw * 0.25, lowerOut + 2, Lc.x, Lc.y);
    g.closePath();
    g.fill();
    // the line between closed lips, and a highlight on the lower lip
    g.strokeStyle = "rgba(90, 25, 40, 0.75)";
    g.lineWidth = 2;
    g.lineCap = "round";
    if (gap <= 1.5) {
      g.beginPath();
      g.moveTo(Lc.x, Lc.y);
      g.bezierCurveTo(mx - hw * 0.5, y0 + 2, mx + hw * 0.5, y0 + 2, R.x, R.y);
      g.stroke();
    }
    g.fillStyle = "rgba(255, 255, 255, 0.25)";
    g.beginPath();
    g.ellipse(mx, lowerIn + (lowerOut - lowerIn) * 0.45, hw * 0.28, 2.5 * thick, 0, 0, 2 * Math.PI);
    g.fill();
    // corners (dimples, smile creases)
    g.strokeStyle = "rgba(168, 103, 77, 0.45)";
    g.lineWidth = 1.5;
    for (const [c, s, name] of [[Lc, -1, "Right"], [R, 1, "Left"]]) {
      const smile = clamp(v[I[`MouthSmile${name}`]]);
      if (smile > 0.15) {
        g.beginPath();
        g.arc(c.x + s * 4, c.y - 2, 6, s > 0 ? -0.9 * Math.PI : -0.1 * Math.PI, s > 0 ? -1.4 * Math.PI : 0.4 * Math.PI,
          s > 0);
        g.stroke();
      }
    }
    return open;
  }

  hairFront(g, p) {
    const dy = p.fy * 0.1;
    const grad = g.createLinearGradient(0, 40, 0, 200);
    grad.addColorStop(0, HAIR_LIGHT);
    grad.addColorStop(1, HAIR);
    g.fillStyle = grad;
    g.beginPath();
    g.moveTo(64, 232);
    g.bezierCurveTo(46, 120, 112, 40, 206, 42);
    g.bezierCurveTo(296, 44, 356, 112, 336, 232);
    g.bezierCurveTo(330, 190, 318, 156, 290, 134 + dy);
    // the fringe sweeps from a part on the character's left across the forehead
    g.bezierCurveTo(262, 150 + dy, 214, 156 + dy, 170, 148 + dy);
    g.bezierCurveTo(132, 142 + dy, 104, 150 + dy, 86, 176 + dy);
    g.bezierCurveTo(76, 192, 70, 210, 64, 232);
    g.closePath();
    g.fill();
    // strands and a sheen
    g.strokeStyle = "rgba(20, 10, 16, 0.35)";
    g.lineWidth = 1.5;
    for (const [x0, x1] of [[250, 150], [268, 190], [232, 112]]) {
      g.beginPath();
      g.moveTo(x0 + 10, 62);
      g.quadraticCurveTo(x0 - 20, 110, x1, 150 + dy);
      g.stroke();
    }
    g.strokeStyle = "rgba(255, 255, 255, 0.1)";
    g.lineWidth = 5;
    g.beginPath();
    g.moveTo(140, 78);
    g.quadraticCurveTo(200, 58, 270, 86);
    g.stroke();
  }
}
