// Incremental Server-Sent Events parser for fetch() + ReadableStream
// (WHATWG HTML §9.2): UTF-8 decoded across reads, CR / LF / CRLF line ends
// (a CR at the end of one read and an LF at the start of the next are one
// line end), comments ignored, several data: lines joined with "\n", and an
// event without its closing blank line discarded at EOF.

export class SSEParser {
  constructor() {
    this.decoder = new TextDecoder("utf-8");
    this.buf = "";
    this.skipLF = false;
    this.started = false;
    this.reset();
  }

  reset() {
    this.data = [];
    this.event = "";
    this.id = null;
  }

  /** Feed one network read (Uint8Array); returns the events it completed. */
  feed(bytes) {
    let text = this.decoder.decode(bytes, { stream: true });
    if (!this.started && text) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    return this._lines(text);
  }

  /** Flush at EOF; a half-built event is discarded, as the spec says. */
  end() {
    const out = this._lines(this.decoder.decode());
    this.buf = "";
    this.reset();
    return out;
  }

  _lines(text) {
    const out = [];
    if (this.skipLF && text.startsWith("\n")) text = text.slice(1);
    this.skipLF = false;
    this.buf += text;
    let start = 0;
    for (let i = 0; i < this.buf.length; i++) {
      const c = this.buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this._line(this.buf.slice(start, i), out);
      if (c === 13) {
        if (i + 1 === this.buf.length) this.skipLF = true;
        else if (this.buf.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.buf = this.buf.slice(start);
    return out;
  }

  _line(line, out) {
    if (line === "") {
      if (this.data.length) {
        out.push({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
      }
      this.data = [];
      this.event = "";
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ":" comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
  }
}

/** Yield the SSE events of a fetch Response body as they arrive. */
export async function* readSSE(response) {
  const parser = new SSEParser();
  const reader = response.body.getReader();
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      yield* parser.feed(value);
    }
    finished = true;
    yield* parser.end();
  } finally {
    // A consumer that leaves early must close the connection, not just stop reading.
    if (!finished) reader.cancel().catch(() => {});
  }
}
