// The server's session chat API (/sessions, /chat/stream, /runs/{id}/...):
// conversations stored by the server and generations ("runs") that survive a
// page reload. Used when the server offers it; the page falls back to
// store.js + /v1/chat/completions otherwise.
//
// Streams are turned into the same small event vocabulary as api.js
// ({type: "text" | "reasoning" | "tool" | "tool-result" | "finish" | "usage" |
// "error" | "abort" | "run"}), so the UI does not care which API it talks to.

import { ApiError, userContent } from "./api.js";
import { withAuth } from "./auth.js";
import { readSSE } from "./sse.js";

const url = (path) => new URL(path, document.baseURI).toString();
const PARAMS_KEY = "sluiceway.sessionParams.v1"; // per-session sampling params, kept in this browser

async function call(method, path, body) {
  const resp = await fetch(url(path), {
    method,
    headers: withAuth(body === undefined ? { accept: "application/json" } : { "content-type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) {
    let message = `${resp.status} ${resp.statusText}`;
    let code;
    try {
      const err = (await resp.json()).error;
      message = err?.message || message;
      code = err?.code;
    } catch {
      /* keep the status line */
    }
    throw new ApiError(message, resp.status, code);
  }
  return resp.status === 204 ? null : resp.json();
}

/**
 * Does the server store sessions (the sessions API is mounted and its store is
 * open)? "yes", "no", or "key" when it wants an API key we do not have.
 */
export async function serverHasSessions() {
  try {
    const resp = await fetch(url("sessions?limit=1"), { headers: withAuth({ accept: "application/json" }) });
    if (resp.status === 401) return "key";
    return resp.ok && (resp.headers.get("content-type") || "").includes("json") ? "yes" : "no";
  } catch {
    return "no";
  }
}

const STATUS = { complete: "complete", interrupted: "stopped", error: "error", streaming: "streaming" };

/** A stored message row → the UI's message shape. */
export function fromRow(r) {
  const parts = r.parts || [];
  if (r.role === "user") {
    const images = parts.filter((p) => p.type === "image" && p.url).map((p) => p.url);
    return { id: r.id, role: "user", content: r.text || "", ...(images.length ? { images } : {}) };
  }
  if (r.role === "tool") { // the user's replies to tool calls the page could not run (toolcalls.js)
    return { id: r.id, role: "tool", content: "", results: parts.filter((p) => p.type === "tool_result")
      .map((p) => ({ id: p.call_id, name: p.name, output: p.output || "", dismissed: !!p.dismissed })) };
  }
  if (r.role !== "assistant") return { id: r.id, role: r.role, content: r.text || "" };
  const text = (t) => parts.filter((p) => p.type === t).map((p) => p.text || "").join("");
  const u = r.usage || {};
  return {
    id: r.id,
    role: "assistant",
    runId: r.run_id || r.id,
    content: text("text"),
    reasoning: text("reasoning"),
    toolCalls: parts
      .filter((p) => p.type === "tool_call")
      .map((p) => ({ id: p.call_id, name: p.name, arguments: p.arguments || "", partial: !!p.partial })),
    toolResults: parts
      .filter((p) => p.type === "tool_result")
      .map((p) => ({ id: p.call_id, name: p.name, output: p.output || "", isError: !!p.is_error })),
    status: STATUS[r.status] || r.status,
    error: r.error?.message,
    model: r.model,
    provider: r.provider,
    metrics: {
      ttftMs: r.ttft_ms ?? null,
      tokPerSec: r.tokens_per_s ?? null,
      promptTokens: u.input ?? null,
      completionTokens: u.output ?? null,
      estimated: !!u.estimated,
    },
  };
}

export class ServerSessionStore {
  constructor(storage = window.localStorage) {
    this.server = true;
    this.storage = storage;
    this.known = new Map(); // id -> last session object handed out
    try {
      this.params = JSON.parse(storage.getItem(PARAMS_KEY) || "{}");
    } catch {
      this.params = {};
    }
  }

  _settings(row) {
    const p = this.params[row.id] || {};
    return { model: row.model || "", system: row.system || "", temperature: p.temperature, maxTokens: p.maxTokens,
      topP: p.topP, reasoningEffort: p.reasoningEffort, seed: p.seed, stop: p.stop, stream: p.stream };
  }

  _session(row, messages) {
    const prev = this.known.get(row.id);
    const s = {
      id: row.id,
      title: row.title || "",
      createdAt: Date.parse(row.created_at) || Date.now(),
      updatedAt: Date.parse(row.updated_at) || Date.now(),
      settings: this._settings(row),
      messages: messages ?? prev?.messages ?? [],
      loaded: messages != null || !!prev?.loaded,
    };
    this.known.set(s.id, s);
    return s;
  }

  /** Newest first; a draft (a new chat with no message yet) is listed on top. */
  async list() {
    const { data } = await call("GET", "sessions?limit=200");
    const stored = data.map((row) => this._session(row)).sort((a, b) => b.updatedAt - a.updatedAt);
    return [...[...this.known.values()].filter((s) => s.draft), ...stored];
  }

  async get(id) {
    const known = this.known.get(id);
    if (known?.draft) return known;
    try {
      const [row, { data }] = await Promise.all([
        call("GET", `sessions/${encodeURIComponent(id)}`),
        call("GET", `sessions/${encodeURIComponent(id)}/messages`),
      ]);
      return this._session(row, data.filter((m) => m.role !== "system").map(fromRow));
    } catch (e) {
      if (e.status === 404) return null;
      throw e;
    }
  }

  /**
   * A new chat is a draft until its first message: POST /chat/stream without a
   * session_id creates the stored session (so "New chat" is instant and never
   * leaves empty chats on the server). `adopt` gives the draft its real id.
   */
  async create(settings = {}) {
    const now = Date.now();
    const s = { id: `draft_${now.toString(36)}${Math.random().toString(36).slice(2, 6)}`, draft: true, title: "",
      createdAt: now, updatedAt: now, settings: { ...settings }, messages: [], loaded: true };
    for (const [id, other] of this.known) if (other.draft && !other.messages.length) this.known.delete(id);
    this.known.set(s.id, s);
    return s;
  }

  /** The server created the draft's session: take its id, and the title it was given here, if any. */
  async adopt(session, id) {
    if (session.id === id) return;
    this.known.delete(session.id);
    const title = session.title;
    session.id = id;
    session.draft = false;
    session._sent = { model: session.settings?.model, system: session.settings?.system };
    this.known.set(id, session);
    this._saveParams(id, session.settings || {});
    if (session.renamed && title) await this.rename(id, title);
  }

  async rename(id, title) {
    const known = this.known.get(id);
    if (known?.draft) {
      known.title = title;
      known.renamed = true;
      return;
    }
    await call("PATCH", `sessions/${encodeURIComponent(id)}`, { title });
  }

  async remove(id) {
    if (this.known.get(id)?.draft) {
      this.known.delete(id);
      return;
    }
    try {
      await call("DELETE", `sessions/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status !== 404) throw e;
    }
    delete this.params[id];
    this._flushParams();
    this.known.delete(id);
  }

  /** Delete the stored messages from `messageId` on (regenerate, edit and resend). 409: an answer is generating. */
  async truncate(id, messageId) {
    try {
      await call("DELETE", `sessions/${encodeURIComponent(id)}/messages?from=${encodeURIComponent(messageId)}`);
    } catch (e) {
      if (e.status !== 404) throw e; // 404: already gone
    }
  }

  /** Messages are saved by the server as they stream; only settings are ours to save. */
  async save(session) {
    const st = session.settings || {};
    if (session.draft) return; // sent with the first message
    this._saveParams(session.id, st);
    const sent = (session._sent ||= {});
    if (sent.model !== st.model || sent.system !== st.system) {
      sent.model = st.model;
      sent.system = st.system;
      await call("PATCH", `sessions/${encodeURIComponent(session.id)}`, {
        model: st.model || null,
        system: st.system || null,
      }).catch((e) => console.warn("sluiceway: could not save chat settings", e));
    }
  }

  _saveParams(id, st) {
    this.params[id] = { temperature: st.temperature, maxTokens: st.maxTokens, topP: st.topP,
      reasoningEffort: st.reasoningEffort, seed: st.seed, stop: st.stop, stream: st.stream };
    this._flushParams();
  }

  _flushParams() {
    try {
      this.storage.setItem(PARAMS_KEY, JSON.stringify(this.params));
    } catch {
      /* storage disabled: params fall back to defaults */
    }
  }
}

/** Canonical run events (the server's own SSE) → the UI's event vocabulary. */
async function* runEvents(resp, cursor) {
  const calls = new Map(); // call_id -> index
  const index = (id) => {
    if (!calls.has(id)) calls.set(id, calls.size);
    return calls.get(id);
  };
  for await (const ev of readSSE(resp)) {
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      continue;
    }
    if (ev.event === "run") {
      yield { type: "run", ...data };
      continue;
    }
    if (ev.id != null) cursor.last = Number(ev.id);
    switch (data.type) {
      case "text-delta":
        yield { type: "text", delta: data.delta };
        break;
      case "reasoning-delta":
        yield { type: "reasoning", delta: data.delta };
        break;
      case "tool-input-start":
        yield { type: "tool", index: index(data.call_id), id: data.call_id, name: data.name, args: "" };
        break;
      case "tool-input-delta":
        yield { type: "tool", index: index(data.call_id), args: data.delta };
        break;
      case "tool-call":
        yield {
          type: "tool",
          index: index(data.call_id),
          id: data.call_id,
          name: data.name,
          args: data.arguments,
          replace: true,
        };
        break;
      case "tool-result":
        yield { type: "tool-result", id: data.call_id, name: data.name, output: data.output, isError: data.is_error };
        break;
      case "finish": {
        const u = data.usage || {};
        yield { type: "finish", reason: data.reason };
        yield {
          type: "usage",
          usage: { prompt: u.input ?? null, completion: u.output ?? null, reasoning: u.reasoning ?? null },
          estimated: !!u.estimated,
        };
        return;
      }
      case "error":
        yield { type: "error", message: data.message, code: data.code };
        return;
      case "abort":
        yield { type: "abort", reason: data.reason };
        return;
    }
  }
}

async function openStream(path, init) {
  const resp = await fetch(url(path), { ...init, headers: withAuth({ accept: "text/event-stream", ...(init.headers || {}) }) });
  if (!resp.ok) {
    let message = `${resp.status} ${resp.statusText}`;
    let code;
    try {
      const err = (await resp.json()).error;
      message = err?.message || message;
      code = err?.code;
    } catch {
      /* keep the status line */
    }
    throw new ApiError(message, resp.status, code);
  }
  return resp;
}

/**
 * The body of a turn (POST /chat, /chat/stream): the user's `text` and
 * `images` (image_url parts), and/or `toolResults` ([{id, output,
 * dismissed}]: replies to the last answer's tool calls, sent as
 * tool_results, before the message).
 */
function turnBody({ sessionId, text, images, toolResults, model, system, temperature, maxTokens, extra }) {
  const params = { ...(extra || {}) };
  if (temperature != null && temperature !== "") params.temperature = Number(temperature);
  if (maxTokens) params.max_tokens = Number(maxTokens);
  const body = { session_id: sessionId, model: model || undefined, system: system || undefined, params };
  if (text != null) body.message = images?.length ? { role: "user", content: userContent(text, images) } : text;
  if (toolResults?.length) {
    body.tool_results = toolResults.map((r) => ({ tool_call_id: r.id, content: r.output,
      ...(r.dismissed ? { dismissed: true } : {}) }));
  }
  return body;
}

/** Record replies to tool calls without asking the model (all of them dismissed): the stored tool message. */
export async function recordToolResults(sessionId, results) {
  const row = await call("POST", `sessions/${encodeURIComponent(sessionId)}/tool-results`, {
    tool_results: turnBody({ toolResults: results }).tool_results,
  });
  return fromRow(row);
}

/** Start a turn in a stored session: POST /chat/stream. The first event is {type: "run", run_id, ...}. */
export async function* streamTurn({ signal, cursor, ...turn }) {
  const body = turnBody(turn);
  const resp = await openStream("chat/stream", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  yield* runEvents(resp, cursor);
}

/** A stored turn without streaming: POST /chat, the saved answer given as the same events at once. */
export async function* completeTurn({ signal, cursor, ...turn }) {
  const out = await call("POST", "chat", turnBody(turn));
  yield { type: "run", run_id: out.run_id, session_id: out.session_id, message_id: out.message_id,
    user_message_id: out.user_message_id, tool_message_id: out.tool_message_id };
  const msg = out.message || {};
  let calls = 0;
  for (const p of msg.parts || []) {
    if (p.type === "reasoning" && p.text) yield { type: "reasoning", delta: p.text };
    else if (p.type === "text" && p.text) yield { type: "text", delta: p.text };
    else if (p.type === "tool_call") {
      yield { type: "tool", index: calls++, id: p.call_id, name: p.name, args: p.arguments || "", replace: true };
    }
  }
  if (msg.finish_reason) yield { type: "finish", reason: msg.finish_reason };
  const u = msg.usage || {};
  yield { type: "usage", usage: { prompt: u.input ?? null, completion: u.output ?? null, reasoning: u.reasoning ?? null },
    estimated: !!u.estimated };
}

/** Reattach to a run (after a reload or a dropped connection) from event `cursor.last`. */
export async function* resumeRun({ runId, signal, cursor }) {
  const resp = await openStream(`runs/${encodeURIComponent(runId)}/stream?after=${cursor.last || 0}`, { signal });
  yield* runEvents(resp, cursor);
}

/** Ask the server to stop a run; the stream then ends with an "abort" event and the partial answer is kept. */
export async function stopRun(runId) {
  return call("POST", `runs/${encodeURIComponent(runId)}/stop`, {});
}

/** The raw upstream request/response of one answer, for the debug drawer. */
export async function getTrace(messageId) {
  return call("GET", `messages/${encodeURIComponent(messageId)}/trace`);
}
