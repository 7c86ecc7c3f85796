// Microphone capture: getUserMedia (echo cancellation on) -> AudioWorklet -> PCM16 chunks.
// The mic stays open once granted; chunks are only sent while the page is listening (talk button held, or
// hands-free). The last `prerollMs` of audio before a press are sent too, so a word started a moment before
// the button went down is not cut.

export class MicError extends Error {
  constructor(reason, message) {
    super(message);
    this.reason = reason; // "denied" | "unavailable" | "insecure" | "failed"
  }
}

export class Mic {
  /**
   * @param {AudioContext} ctx
   * @param {{rate: number, onChunk: (pcm: Int16Array, rms: number) => void, prerollMs?: number}} options
   */
  constructor(ctx, options) {
    this.ctx = ctx;
    this.rate = options.rate;
    this.onChunk = options.onChunk;
    this.onLevel = options.onLevel || (() => {});
    this.prerollMs = options.prerollMs ?? 300;
    this.stream = null;
    this.node = null;
    this.opening = null;
    this.listening = false;
    this.preroll = [];
    this.prerollSamples = 0;
  }

  get open() {
    return this.node !== null;
  }

  /** Ask for the microphone (once). Rejects with MicError explaining why it is not available. */
  async ensureOpen() {
    if (this.node) return;
    if (!this.opening) this.opening = this.openNow().finally(() => { this.opening = null; });
    return this.opening;
  }

  async openNow() {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new MicError("insecure", "The microphone needs a secure page: open it as http://localhost or https://.");
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
        video: false,
      });
    } catch (err) {
      const name = err && err.name;
      if (name === "NotAllowedError" || name === "SecurityError") {
        throw new MicError("denied", "Microphone access was refused. Allow it in the browser's site settings, " +
          "or type your message below.");
      }
      if (name === "NotFoundError" || name === "OverconstrainedError") {
        throw new MicError("unavailable", "No microphone was found. Type your message below instead.");
      }
      throw new MicError("failed", `The microphone could not be opened (${name || err}).`);
    }
    await this.ctx.audioWorklet.addModule(new URL("./mic-worklet.js", import.meta.url));
    const source = this.ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(this.ctx, "facecast-mic", {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
      processorOptions: { targetRate: this.rate, chunkMs: 20 },
    });
    node.port.onmessage = (event) => this.receive(event.data.pcm, event.data.rms);
    const mute = this.ctx.createGain();
    mute.gain.value = 0; // keeps the worklet pulled by the graph; nothing of the mic is heard
    source.connect(node).connect(mute).connect(this.ctx.destination);
    this.stream = stream;
    this.node = node;
    stream.getAudioTracks().forEach((track) => {
      track.addEventListener("ended", () => this.close());
    });
  }

  receive(pcm, rms) {
    this.onLevel(rms);
    if (this.listening) {
      this.onChunk(pcm, rms);
      return;
    }
    this.preroll.push(pcm);
    this.prerollSamples += pcm.length;
    const keep = (this.rate * this.prerollMs) / 1000;
    while (this.preroll.length > 1 && this.prerollSamples - this.preroll[0].length >= keep) {
      this.prerollSamples -= this.preroll.shift().length;
    }
  }

  /** Start sending chunks (the pre-roll first). */
  listen() {
    if (this.listening) return;
    this.listening = true;
    const preroll = this.preroll;
    this.preroll = [];
    this.prerollSamples = 0;
    for (const pcm of preroll) this.onChunk(pcm, 0);
  }

  /** Stop sending chunks. */
  mute() {
    this.listening = false;
  }

  close() {
    this.listening = false;
    if (this.node) this.node.disconnect();
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    this.node = null;
    this.stream = null;
  }
}
