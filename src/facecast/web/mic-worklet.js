// AudioWorklet processor: microphone float samples -> mono PCM16 chunks of ~20 ms at `targetRate`,
// posted to the main thread with their RMS level. Resamples linearly only when the context's rate is not
// one the protocol supports (the page normally asks for the context's own rate, so no resampling happens).

class FacecastMicProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    this.targetRate = opts.targetRate || sampleRate;
    this.step = sampleRate / this.targetRate; // input samples per output sample
    this.chunk = Math.max(1, Math.round((this.targetRate * (opts.chunkMs || 20)) / 1000));
    this.out = new Int16Array(this.chunk);
    this.filled = 0;
    this.sumSquares = 0;
    this.phase = 0; // position of the next output sample, in input samples, relative to the current block
    this.last = 0; // last input sample of the previous block (for interpolation across blocks)
  }

  push(value) {
    const clamped = value > 1 ? 1 : value < -1 ? -1 : value;
    this.out[this.filled++] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    this.sumSquares += clamped * clamped;
    if (this.filled === this.chunk) {
      const rms = Math.sqrt(this.sumSquares / this.chunk);
      this.port.postMessage({ pcm: this.out, rms }, [this.out.buffer]);
      this.out = new Int16Array(this.chunk);
      this.filled = 0;
      this.sumSquares = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const n = input[0].length;
    const channels = input.length;
    const mono = channels === 1 ? input[0] : new Float32Array(n);
    if (channels > 1) {
      for (let c = 0; c < channels; c++) for (let i = 0; i < n; i++) mono[i] += input[c][i] / channels;
    }
    if (this.step === 1) {
      for (let i = 0; i < n; i++) this.push(mono[i]);
    } else {
      // Linear interpolation between input samples; phase may start at -1 < phase < 0 (uses `last`).
      while (this.phase < n - 1) {
        const i = Math.floor(this.phase);
        const frac = this.phase - i;
        const a = i < 0 ? this.last : mono[i];
        const b = mono[i + 1];
        this.push(a + (b - a) * frac);
        this.phase += this.step;
      }
      this.phase -= n;
      this.last = mono[n - 1];
    }
    return true;
  }
}

registerProcessor("facecast-mic", FacecastMicProcessor);
