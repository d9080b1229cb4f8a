// The HTTP API, seen from the page. Everything the UI needs from the server
// goes through this module, and a streamed reply is handed to the UI as a
// small protocol-neutral event vocabulary:
//
//   {type: "text", delta}                  answer text
//   {type: "reasoning", delta}             thinking text
//   {type: "tool", index, id, name, args}  a tool-call fragment (args is a JSON text fragment)
//   {type: "finish", reason}               the model's finish reason
//   {type: "usage", usage}                 {prompt, completion, reasoning}
//   {type: "error", message, code}         an error reported inside the stream
//
// so moving from /v1/chat/completions to the sessions/runs API means a new
// `streamReply` here, not a new UI.

import { withAuth } from "./auth.js";
import { readSSE } from "./sse.js";

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

// Relative URLs, so the UI also works when sluiceway is mounted under a prefix.
const url = (path) => new URL(path, document.baseURI).toString();

async function failure(resp) {
  let message = `${resp.status} ${resp.statusText}`;
  let code;
  try {
    const body = await resp.json();
    if (body?.error?.message) message = body.error.message;
    code = body?.error?.code;
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(message, resp.status, code);
}

/** [{id, provider, ownedBy, isDefault}] from GET /v1/models. */
export async function listModels() {
  const resp = await fetch(url("v1/models"), { headers: withAuth({ accept: "application/json" }) });
  if (!resp.ok) throw await failure(resp);
  const body = await resp.json();
  return (body.data || []).map((m) => ({
    id: m.id, provider: m.provider || m.owned_by, ownedBy: m.owned_by, isDefault: m.default === true,
  }));
}

/** A user turn's content: its text, or text and image_url parts when it has images. */
export function userContent(text, images) {
  if (!images?.length) return text;
  const parts = text ? [{ type: "text", text }] : [];
  return parts.concat(images.map((url) => ({ type: "image_url", image_url: { url } })));
}

/** Chat Completions messages from the UI's conversation. */
export function toWireMessages(system, messages) {
  const out = [];
  if (system && system.trim()) out.push({ role: "system", content: system });
  // A tool call is replayed only with the result the user gave it (a tool
  // message): a call without its result is rejected by strict upstreams.
  const answered = new Set(messages.filter((m) => m.role === "tool").flatMap((m) => m.results.map((r) => r.id)));
  for (const m of messages) {
    if (m.role === "user") {
      out.push({ role: "user", content: userContent(m.content, m.images) });
    } else if (m.role === "tool") {
      for (const r of m.results) out.push({ role: "tool", tool_call_id: r.id, content: r.output });
    } else if (m.role === "assistant") {
      const calls = (m.toolCalls || []).filter((c) => c && answered.has(c.id));
      if (!m.content && !calls.length) continue;
      const msg = { role: "assistant", content: m.content || null };
      if (calls.length) {
        msg.tool_calls = calls.map((c) => ({ id: c.id, type: "function",
          function: { name: c.name, arguments: c.arguments || "{}" } }));
      }
      out.push(msg);
    }
  }
  return out;
}

function usageOf(u) {
  return {
    prompt: u.prompt_tokens ?? null,
    completion: u.completion_tokens ?? null,
    reasoning: u.completion_tokens_details?.reasoning_tokens ?? null,
  };
}

/**
 * Stream one assistant reply. Yields the events described above; throws
 * ApiError when the server refuses the request, and an AbortError when
 * `signal` fires (aborting the fetch closes the connection, which is how the
 * server learns to cancel the upstream).
 */
/** top_p, reasoning_effort, seed and stop from the settings panel, as request fields (unset ones left out). */
export function samplingParams({ topP, reasoningEffort, seed, stop } = {}) {
  const out = {};
  if (topP !== undefined && topP !== null && topP !== "") out.top_p = Number(topP);
  if (reasoningEffort) out.reasoning_effort = reasoningEffort;
  if (seed !== undefined && seed !== null && seed !== "") out.seed = Math.trunc(Number(seed));
  const stops = String(stop || "").split("\n").filter((s) => s !== "");
  if (stops.length) out.stop = stops.slice(0, 4);
  return out;
}

/** The same reply without streaming (the "Stream replies" setting off): one
 * request with stream: false, its answer given as the same events at once. */
export async function* completeReply({ model, system, messages, temperature, maxTokens, extra, signal }) {
  const body = { model, messages: toWireMessages(system, messages), stream: false };
  if (temperature != null && temperature !== "") body.temperature = Number(temperature);
  if (maxTokens) body.max_tokens = Number(maxTokens);
  Object.assign(body, extra || {});
  const resp = await fetch(url("v1/chat/completions"), {
    method: "POST",
    headers: withAuth({ "content-type": "application/json" }),
    body: JSON.stringify(body),
    signal,
  });
  if (!resp.ok) throw await failure(resp);
  const data = await resp.json();
  const choice = (data.choices || [])[0] || {};
  const m = choice.message || {};
  const thinking = m.reasoning_content ?? m.reasoning;
  if (thinking) yield { type: "reasoning", delta: thinking };
  if (m.content) yield { type: "text", delta: m.content };
  for (const [i, tc] of (m.tool_calls || []).entries()) {
    yield { type: "tool", index: i, id: tc.id, name: tc.function?.name, args: tc.function?.arguments || "" };
  }
  if (choice.finish_reason) yield { type: "finish", reason: choice.finish_reason };
  if (data.usage) yield { type: "usage", usage: usageOf(data.usage) };
}

export async function* streamReply({ model, system, messages, temperature, maxTokens, extra, signal }) {
  const body = {
    model,
    messages: toWireMessages(system, messages),
    stream: true,
    stream_options: { include_usage: true },
  };
  if (temperature != null && temperature !== "") body.temperature = Number(temperature);
  if (maxTokens) body.max_tokens = Number(maxTokens);
  Object.assign(body, extra || {});
  const resp = await fetch(url("v1/chat/completions"), {
    method: "POST",
    headers: withAuth({ "content-type": "application/json", accept: "text/event-stream" }),
    body: JSON.stringify(body),
    signal,
  });
  if (!resp.ok) throw await failure(resp);
  for await (const ev of readSSE(resp)) {
    if (ev.data === "[DONE]") return;
    let chunk;
    try {
      chunk = JSON.parse(ev.data);
    } catch {
      continue; // a stray non-JSON event must not end the reply
    }
    if (chunk.error) {
      yield { type: "error", message: chunk.error.message || "upstream error", code: chunk.error.code };
      return;
    }
    for (const choice of chunk.choices || []) {
      if (choice.index) continue; // the UI asks for one choice
      const d = choice.delta || {};
      const thinking = d.reasoning_content ?? d.reasoning;
      if (thinking) yield { type: "reasoning", delta: thinking };
      if (d.content) yield { type: "text", delta: d.content };
      for (const tc of d.tool_calls || []) {
        yield {
          type: "tool",
          index: tc.index ?? 0,
          id: tc.id,
          name: tc.function?.name,
          args: tc.function?.arguments || "",
        };
      }
      if (choice.finish_reason) yield { type: "finish", reason: choice.finish_reason };
    }
    if (chunk.usage) yield { type: "usage", usage: usageOf(chunk.usage) };
  }
}
