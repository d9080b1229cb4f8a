// The microphone side of voice mode (voice.js): 16 kHz PCM frames from the
// microphone, a small energy detector that says when someone starts and stops
// talking (hands-free), and the browser's own recogniser as a fallback.

/** Open the microphone on `ctx`; `onFrame(pcm16k, rms, ms)` per frame. Returns a handle with close(). */
export async function openMic(ctx, onFrame) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
  });
  const source = ctx.createMediaStreamSource(stream);
  const node = ctx.createScriptProcessor(4096, 1, 1);
  const ratio = ctx.sampleRate / 16000;
  node.onaudioprocess = (e) => {
    const input = e.inputBuffer.getChannelData(0);
    const out = new Int16Array(Math.floor(input.length / ratio));
    let energy = 0;
    for (let i = 0; i < out.length; i++) {
      const x = Math.max(-1, Math.min(1, input[Math.floor(i * ratio)]));
      energy += x * x;
      out[i] = x * 32767;
    }
    onFrame(out, Math.sqrt(energy / Math.max(1, out.length)), (input.length / ctx.sampleRate) * 1000);
  };
  source.connect(node);
  node.connect(ctx.destination);
  return {
    close() {
      node.disconnect();
      source.disconnect();
      for (const t of stream.getTracks()) t.stop();
    },
  };
}

/** Energy-based speech detection: "start" after `startMs` of loud frames, "end" after `endMs` of quiet. */
export class SpeechDetector {
  constructor({ threshold = 0.04, startMs = 150 } = {}) {
    this.threshold = threshold;
    this.startMs = startMs;
    this.talking = false;
    this.loud = 0;
    this.quiet = 0;
  }

  feed(rms, ms, endMs) {
    if (rms > this.threshold) {
      this.loud += ms;
      this.quiet = 0;
    } else {
      this.quiet += ms;
      this.loud = 0;
    }
    if (!this.talking && this.loud >= this.startMs) {
      this.talking = true;
      return "start";
    }
    if (this.talking && this.quiet >= endMs) {
      this.talking = false;
      return "end";
    }
    return null;
  }
}

/** The browser's own recogniser (Chrome, Safari), or null where there is none. */
export function browserRecognizer(onText, onEnd) {
  const Rec = window.SpeechRecognition || window.webkitSpeechRecognition;
  if (!Rec) return null;
  const rec = new Rec();
  rec.lang = navigator.language || "en-US";
  rec.onresult = (e) => onText(e.results[0][0].transcript || "");
  rec.onend = onEnd;
  return rec;
}
