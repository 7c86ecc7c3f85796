// The WebRTC reply audio on its way to the speakers: passed through unchanged, and watched for an utterance's
// first voiced sample when the page arms the tap (docs/protocol.md, "WebRTC"). The sample's AudioContext frame
// is posted back: that frame is where the utterance's `audio_onset` sample plays, the anchor of its face clock.
// An onset counts only after 20 ms below the level since arming: the tail of a reply just cleared (still in
// the jitter buffer) is not taken for the next one's first word.

class RtcTap extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.level = (options.processorOptions && options.processorOptions.level) || 0.02;
    this.armed = null; // utterance id being watched for
    this.quiet = 0; // samples below the level since arming
    this.needQuiet = Math.round(0.02 * sampleRate);
    this.port.onmessage = (event) => {
      if (event.data.arm !== undefined) {
        this.armed = event.data.arm;
        this.quiet = 0;
      }
      if (event.data.disarm) this.armed = null;
    };
  }

  process(inputs, outputs) {
    const input = inputs[0] || [];
    const output = outputs[0] || [];
    for (let c = 0; c < output.length; c++) {
      const source = input[c] || input[0];
      if (source) output[c].set(source);
      else output[c].fill(0);
    }
    if (this.armed !== null && input.length) {
      const n = input[0].length;
      for (let i = 0; i < n; i++) {
        let peak = 0;
        for (let c = 0; c < input.length; c++) peak = Math.max(peak, Math.abs(input[c][i]));
        if (peak < this.level) {
          this.quiet += 1;
        } else if (this.quiet < this.needQuiet) {
          this.quiet = 0; // still the sound from before arming
        } else {
          this.port.postMessage({ utterance: this.armed, frame: currentFrame + i });
          this.armed = null;
          break;
        }
      }
    }
    return true;
  }
}

registerProcessor("rtc-tap", RtcTap);
