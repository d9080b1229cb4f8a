// Voice mode: hear the answer while it is still being written.
//
// One WebSocket to /v1/voice per page. For each answer (a server-side run) the
// page sends {type: "follow", run_id}; the server cuts the text into sentences
// answers {type: "started", job}, then per sentence {type: "sentence", job,
// seq, text}, binary frames (u32 job, u32 seq, u32 sample rate, PCM s16le
// mono) and {type: "sentence.end"}. Only the current job's audio is played:
// after a stop, frames already on the wire are dropped.
// Chunks are scheduled back to back on one AudioContext clock, so playback is
// gapless and in order whatever the network does; the sentence being heard is
// highlighted in the message (CSS Custom Highlight API) and shown as a caption.
// Stop (or starting to talk) is a barge-in: every scheduled source stops at
// once, and the server stops the synthesis and the generation.
//
// Push-to-talk: hold the mic button; 16 kHz PCM goes up the same socket and
// the server's recogniser answers with {type: "transcript", text}. Hands-free:
// the mic stays open and speech is found by its energy; talking interrupts
// the answer. With no server recogniser, the browser's own is used.

import { getApiKey } from "./auth.js";
import { browserRecognizer, openMic, SpeechDetector } from "./voice_mic.js";

const PREF = "sluiceway.voice.v1";
const HIGHLIGHT = "sluiceway-speaking";

export class Voice {
  constructor({ onTranscript = () => {}, messageEl = () => null } = {}) {
    this.onTranscript = onTranscript;
    this.messageEl = messageEl; // the element of the answer being spoken
    this.enabled = localStorage.getItem(PREF) === "on";
    this.ws = null;
    this.ctx = null;
    this.sources = new Set();
    this.nextTime = 0;
    this.sentences = new Map(); // seq → text
    this.timers = [];
    this.job = null; // the server's job whose audio is played
    this.awaiting = 0; // jobs asked for whose "started" has not come yet
    this.endOfSpeechMs = 800; // hands-free: this much quiet ends an utterance
    // what a test (or a curious user) can read: every chunk scheduled, every stop
    this.stats = { scheduled: [], sentencesHeard: [], stops: 0, stoppedSources: 0, played: 0, heardSpeech: 0,
      sentences: [], done: 0, transcripts: [], errors: [] };
    window.sluicewayVoice = this;
  }

  // ------------------------------------------------------------ wiring
  mount({ toggle, mic, caption, handsFree }) {
    this.toggleEl = toggle;
    this.handsFreeEl = handsFree;
    this.captionEl = caption;
    this.micEl = mic;
    const paint = () => {
      toggle.setAttribute("aria-pressed", String(this.enabled));
      toggle.classList.toggle("on", this.enabled);
      if (mic) mic.hidden = !this.enabled;
      if (handsFree) handsFree.hidden = !this.enabled;
      if (!this.enabled) {
        this.caption("");
        if (this.handsFree) this.setHandsFree(false);
      }
    };
    toggle.addEventListener("click", async () => {
      this.enabled = !this.enabled;
      localStorage.setItem(PREF, this.enabled ? "on" : "off");
      paint();
      if (this.enabled) {
        this.audio(); // created inside the click: browsers allow sound after a gesture
        await this.connect().catch((e) => this.fail(e));
      } else {
        this.stop();
      }
    });
    if (mic) {
      mic.addEventListener("pointerdown", (e) => {
        e.preventDefault();
        this.listen().catch((err) => this.fail(err));
      });
      for (const ev of ["pointerup", "pointerleave"]) mic.addEventListener(ev, () => this.endListen());
    }
    handsFree?.addEventListener("click", () => this.setHandsFree(!this.handsFree).catch((e) => this.fail(e)));
    // Voice left on from an earlier visit: browsers allow sound only after a gesture on the page,
    // so the audio clock is started by the first key or click (sending a message is one).
    const unlock = () => {
      if (this.enabled) this.audio();
    };
    document.addEventListener("pointerdown", unlock, { capture: true });
    document.addEventListener("keydown", unlock, { capture: true });
    paint();
  }

  audio() {
    if (!this.ctx) this.ctx = new AudioContext();
    if (this.ctx.state === "suspended") this.ctx.resume();
    return this.ctx;
  }

  connect() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return this.ready;
    const url = new URL("v1/voice", document.baseURI);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.ready = new Promise((resolve, reject) => {
      ws.onopen = () => {
        const key = getApiKey();
        ws.send(JSON.stringify({ type: "hello", ...(key ? { api_key: key } : {}) }));
      };
      ws.onerror = () => reject(new Error("the voice connection failed"));
      ws.onclose = () => {
        if (this.ws === ws) this.ws = null;
      };
      ws.onmessage = (e) => {
        if (typeof e.data !== "string") return this.play(e.data);
        const msg = JSON.parse(e.data);
        if (msg.type === "ready") {
          this.serverRecognizer = (msg.transcription || []).length > 0;
          resolve();
        }
        this.control(msg);
      };
    });
    return this.ready;
  }

  // ------------------------------------------------------------ speaking
  /** Speak a server-side run's answer as it is written. */
  async follow(runId) {
    if (!this.enabled || !runId) return;
    this.silence();
    await this.connect();
    this.awaiting++;
    this.send({ type: "follow", run_id: runId });
  }

  /** Speak text this page streams itself (answers not run by the server), as it arrives. */
  text(delta) {
    if (!this.enabled || !delta) return;
    const first = !this.streaming;
    if (first) {
      this.streaming = true;
      this.silence();
    }
    // one promise: the deltas go out in order once the socket is ready
    this.connect().then(() => {
      if (first) this.awaiting++; // the first delta starts a job on the server
      this.send({ type: "text", delta });
    }, (e) => this.fail(e));
  }

  textEnd() {
    if (!this.streaming) return;
    this.streaming = false;
    this.connect().then(() => this.send({ type: "text.end" }), (e) => this.fail(e));
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  control(msg) {
    if (msg.type === "started") {
      if (this.awaiting > 0 && --this.awaiting === 0) this.job = msg.job; // the answer asked for last
    } else if (msg.job !== undefined && msg.job !== this.job) {
      return; // an earlier answer's tail
    } else if (msg.type === "sentence") {
      this.sentences.set(msg.seq, msg.text);
      this.stats.sentences.push(msg.text);
    } else if (msg.type === "done") this.stats.done++;
    else if (msg.type === "transcript") {
      this.stats.transcripts.push(msg.text || "");
      this.onTranscript(msg.text || "");
    }
    else if (msg.type === "error") this.fail(new Error(msg.message));
  }

  play(buf) {
    const view = new DataView(buf);
    if (view.getUint32(0) !== this.job) return; // stopped, or an earlier answer: not to be heard
    const seq = view.getUint32(4);
    const rate = view.getUint32(8);
    const pcm = new Int16Array(buf, 12, (buf.byteLength - 12) >> 1);
    if (!pcm.length) return;
    const ctx = this.audio();
    const data = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
    const buffer = ctx.createBuffer(1, data.length, rate);
    buffer.copyToChannel(data, 0);
    const src = ctx.createBufferSource();
    src.buffer = buffer;
    src.connect(ctx.destination);
    // back to back on the audio clock: no gap between chunks, none overlapping
    const start = Math.max(this.nextTime, ctx.currentTime + 0.02);
    const first = !this.stats.scheduled.some((c) => c.seq === seq);
    src.start(start);
    this.nextTime = start + buffer.duration;
    this.sources.add(src);
    src.onended = () => {
      if (this.sources.delete(src)) this.stats.played++; // not one we stopped
    };
    this.stats.scheduled.push({ seq, start, duration: buffer.duration });
    if (first) this.at(start, () => this.heard(seq));
  }

  at(when, fn) {
    const ms = Math.max(0, (when - this.ctx.currentTime) * 1000);
    this.timers.push(setTimeout(fn, ms));
  }

  heard(seq) {
    const text = this.sentences.get(seq) || "";
    this.stats.sentencesHeard.push(seq);
    this.caption(text);
    this.highlight(text);
  }

  caption(text) {
    if (!this.captionEl) return;
    this.captionEl.textContent = text;
    this.captionEl.hidden = !text;
  }

  /** Mark the sentence in the answer, when the rendered text still contains it. */
  highlight(text) {
    if (!window.CSS?.highlights) return;
    CSS.highlights.delete(HIGHLIGHT);
    const root = this.messageEl();
    const needle = text.replace(/[*_`#>]/g, "").replace(/\s+/g, " ").trim().slice(0, 60);
    if (!root || !needle) return;
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const nodes = [];
    let all = "";
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      nodes.push([n, all.length]);
      all += n.data;
    }
    const at = all.indexOf(needle);
    if (at < 0) return;
    const range = document.createRange();
    const place = (pos, setter) => {
      for (let i = nodes.length - 1; i >= 0; i--) {
        if (nodes[i][1] <= pos) return setter(nodes[i][0], Math.min(pos - nodes[i][1], nodes[i][0].data.length));
      }
    };
    place(at, (n, o) => range.setStart(n, o));
    place(at + needle.length, (n, o) => range.setEnd(n, o));
    CSS.highlights.set(HIGHLIGHT, new Highlight(range));
  }

  /** Stop every sound now (nothing is sent). */
  silence() {
    const stopping = [...this.sources];
    this.sources.clear(); // first, so their "ended" events do not count as played
    this.job = null; // frames still on the wire are dropped
    for (const src of stopping) {
      try {
        src.stop();
        this.stats.stoppedSources++;
      } catch {
        /* already stopped */
      }
    }
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    this.sentences.clear();
    this.nextTime = 0;
    this.caption("");
    if (window.CSS?.highlights) CSS.highlights.delete(HIGHLIGHT);
  }

  /** Barge-in: silence at once, and have the server stop the answer too. */
  stop() {
    this.stats.stops++;
    this.streaming = false;
    this.silence();
    this.send({ type: "stop" });
  }

  get playing() {
    return this.sources.size > 0;
  }

  // ------------------------------------------------------------ listening
  // Push-to-talk: hold the mic button. Hands-free: the mic stays open and a
  // simple energy detector finds speech; speaking interrupts the answer.
  // Without a server recogniser, the browser's own speech recognition is used.

  async openMic() {
    if (!this.mic) {
      const handle = await openMic(this.audio(), (pcm, rms, ms) => this.frame(pcm, rms, ms));
      this.mic = { handle, detector: new SpeechDetector(), preroll: [] };
    }
    return this.mic;
  }

  closeMic() {
    const mic = this.mic;
    this.mic = null;
    mic?.handle.close();
  }

  /** One microphone frame: sent while talking; hands-free, the detector decides when talking starts and ends. */
  frame(pcm, rms, ms) {
    const mic = this.mic;
    if (!mic) return;
    if (this.pushing) return this.sendAudio(pcm);
    if (!this.handsFree) return;
    const turn = mic.detector.feed(rms, ms, this.endOfSpeechMs);
    if (turn === "start") {
      this.stats.heardSpeech++;
      this.stop(); // the user speaking interrupts the answer
      this.send({ type: "listen", sample_rate: 16000 });
      for (const p of mic.preroll) this.sendAudio(p); // the start of the first word
      mic.preroll = [];
    }
    if (mic.detector.talking || turn === "end") this.sendAudio(pcm);
    else mic.preroll = [...mic.preroll, pcm].slice(-3);
    if (turn === "end") this.send({ type: "listen.end" });
  }

  sendAudio(pcm) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(pcm.buffer);
  }

  async listen() {
    if (this.pushing) return;
    await this.connect();
    this.stop(); // the user talking interrupts the answer
    this.pushing = true;
    this.micEl?.classList.add("on");
    if (!this.serverRecognizer) return this.browserListen();
    await this.openMic();
    this.send({ type: "listen", sample_rate: 16000 });
  }

  endListen() {
    if (!this.pushing) return;
    this.pushing = false;
    this.micEl?.classList.remove("on");
    if (this.recognition) return this.recognition.stop();
    this.send({ type: "listen.end" });
    if (!this.handsFree) this.closeMic();
  }

  async setHandsFree(on) {
    this.handsFree = on;
    this.handsFreeEl?.setAttribute("aria-pressed", String(on));
    this.handsFreeEl?.classList.toggle("on", on);
    if (on) {
      await this.connect();
      await this.openMic();
    } else if (!this.pushing) {
      this.closeMic();
    }
  }

  /** The browser's own recogniser, when the server has none. */
  browserListen() {
    const rec = browserRecognizer((text) => this.onTranscript(text), () => (this.recognition = null));
    if (!rec) {
      this.pushing = false;
      this.micEl?.classList.remove("on");
      return this.fail(new Error("no speech recogniser: configure voice.transcription on the server"));
    }
    this.recognition = rec;
    rec.start();
  }

  fail(e) {
    this.stats.errors.push(String(e?.message || e));
    console.error("sluiceway voice:", e);
  }
}
