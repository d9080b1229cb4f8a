// The chat page: sessions sidebar, model picker, settings, composer and the
// streaming loop. Two backends behind one set of calls: the server's session
// API (sessions_api.js: stored chats, resumable runs, server-side stop) when
// the server offers it, else this browser's storage (store.js) with
// /v1/chat/completions (api.js). `?store=local` forces the second.

import { ApiError, completeReply, listModels, samplingParams, streamReply } from "./api.js";
import { getApiKey, setApiKey } from "./auth.js";
import { ICONS, paintIcons } from "./icons.js";
import { copyText, loadMarkdown, markdownAvailable } from "./markdown.js";
import { AssistantView, h, userMessageEl } from "./messages.js";
import {
  completeTurn, getTrace, recordToolResults, resumeRun, ServerSessionStore, serverHasSessions, stopRun, streamTurn,
} from "./sessions_api.js";
import { LocalSessionStore, newId } from "./store.js";
import { wireProviders } from "./providers.js";
import { Voice } from "./voice.js";
import { exportChat } from "./export.js";
import { Attachments } from "./attachments.js";
import { callState, clientCalls, DISMISSED, dismissOpen, paintCall, reply } from "./toolcalls.js";

const $ = (id) => document.getElementById(id);
let store = null; // ServerSessionStore when the server keeps chats, else LocalSessionStore (this browser)
const DEFAULTS = { model: "", system: "", temperature: 0.7, maxTokens: "", topP: "", reasoningEffort: "", seed: "",
  stop: "", stream: true };
const LAST_SETTINGS = "sluiceway.lastSettings";

const state = {
  session: null,
  models: [],
  run: null, // {controller, session, msg, view, firstAt}
  filter: "",
  views: new Map(), // message id -> AssistantView, for the open session
  stick: true, // keep the view pinned to the newest text
};

// ------------------------------------------------------------------ theme
function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  try {
    localStorage.setItem("sluiceway.theme", theme);
  } catch {
    /* storage disabled */
  }
  const btn = $("toggle-theme");
  btn.innerHTML = theme === "dark" ? ICONS.sun : ICONS.moon;
  btn.setAttribute("aria-pressed", String(theme === "dark"));
}

// ------------------------------------------------------------------ models
async function loadModels() {
  const select = $("model");
  try {
    state.models = (await listModels()).filter((m) => m.provider !== "speech"); // voices are not chat models
  } catch (e) {
    console.error("sluiceway: could not list models", e);
    state.models = [];
    if (e.status === 401) askKey(e.message);
  }
  select.textContent = "";
  if (!state.models.length) {
    const o = h("option", "", "No models available");
    o.value = "";
    o.disabled = true;
    select.append(o);
    return;
  }
  for (const m of state.models) {
    const o = h("option", "", m.id);
    o.value = m.id;
    if (m.provider) o.title = `provider: ${m.provider}`;
    select.append(o);
  }
}

function pickModel(wanted) {
  const ids = state.models.map((m) => m.id);
  if (wanted && ids.includes(wanted)) return wanted;
  // the server's configured default model, not merely the first one listed
  const preferred = state.models.find((m) => m.isDefault);
  return preferred ? preferred.id : ids[0] || "";
}

// ------------------------------------------------------------------ settings
function lastSettings() {
  try {
    return { ...DEFAULTS, ...JSON.parse(localStorage.getItem(LAST_SETTINGS) || "{}") };
  } catch {
    return { ...DEFAULTS };
  }
}

function showSettings(s) {
  const st = { ...DEFAULTS };
  for (const [k, v] of Object.entries(s.settings || {})) if (v != null) st[k] = v;
  st.model = pickModel(st.model);
  s.settings = st;
  $("model").value = st.model;
  $("system").value = st.system;
  $("temperature").value = st.temperature;
  $("temperature-out").textContent = Number(st.temperature).toFixed(2);
  $("max-tokens").value = st.maxTokens;
  $("top-p").value = st.topP;
  $("reasoning-effort").value = st.reasoningEffort;
  $("seed").value = st.seed;
  $("stop-seqs").value = st.stop;
  $("stream").checked = st.stream !== false;
  $("empty-model").textContent = st.model || "the selected model";
}

let saveTimer = 0;
function settingsChanged() {
  const s = state.session;
  s.settings = {
    model: $("model").value,
    system: $("system").value,
    temperature: Number($("temperature").value),
    maxTokens: $("max-tokens").value,
    topP: $("top-p").value,
    reasoningEffort: $("reasoning-effort").value,
    seed: $("seed").value,
    stop: $("stop-seqs").value,
    stream: $("stream").checked,
  };
  $("temperature-out").textContent = s.settings.temperature.toFixed(2);
  $("empty-model").textContent = s.settings.model || "the selected model";
  try {
    localStorage.setItem(LAST_SETTINGS, JSON.stringify(s.settings));
  } catch {
    /* storage disabled */
  }
  clearTimeout(saveTimer);
  saveTimer = setTimeout(() => store.save(s), 300);
}

// ------------------------------------------------------------------ sidebar
const titleOf = (s) => s.title || "New chat";

async function renderSidebar({ refresh = true } = {}) {
  const list = $("session-list");
  const q = state.filter.trim().toLowerCase();
  if (refresh || !state.listed) state.listed = await store.list();
  const sessions = state.listed.filter(
    (s) =>
      (!s.draft || s === state.session) &&
      (!q ||
      titleOf(s).toLowerCase().includes(q) ||
      s.messages.some((m) => (m.content || "").toLowerCase().includes(q))),
  );
  list.textContent = "";
  for (const s of sessions) {
    const item = h("div", "session-item");
    item.dataset.id = s.id;
    if (state.session && s.id === state.session.id) item.classList.add("active");
    const open = h("button", "session-open", titleOf(s));
    open.type = "button";
    open.dataset.action = "open";
    open.title = titleOf(s);
    const acts = h("span", "session-actions");
    for (const [icon, label, action] of [
      ["edit", "Rename", "rename"],
      ["trash", "Delete", "delete"],
    ]) {
      const b = h("button", "act");
      b.type = "button";
      b.dataset.action = action;
      b.title = label;
      b.setAttribute("aria-label", `${label} “${titleOf(s)}”`);
      b.innerHTML = ICONS[icon];
      acts.append(b);
    }
    item.append(open, acts);
    list.append(item);
  }
  if (!sessions.length) list.append(h("p", "muted", q ? "No chats match." : "No chats yet."));
}

function startRename(item) {
  const id = item.dataset.id;
  const open = item.querySelector(".session-open");
  const input = h("input", "rename-input");
  input.value = open.textContent === "New chat" ? "" : open.textContent;
  input.setAttribute("aria-label", "Chat title");
  open.replaceWith(input);
  input.focus();
  input.select();
  let done = false;
  const finish = async (commit) => {
    if (done) return;
    done = true;
    if (commit) {
      const title = input.value.trim();
      await store.rename(id, title);
      if (state.session?.id === id) {
        state.session.title = title;
        $("chat-title").textContent = titleOf(state.session);
      }
    }
    renderSidebar();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      finish(true);
    } else if (e.key === "Escape") {
      e.stopPropagation();
      finish(false);
    }
  });
  input.addEventListener("blur", () => finish(true));
}

function askDelete(button) {
  if (button.classList.contains("confirm")) return true;
  button.classList.add("confirm");
  button.title = "Click again to delete";
  button.textContent = "Delete?";
  setTimeout(() => renderSidebar(), 3000);
  return false;
}

async function deleteSession(id) {
  await store.remove(id);
  if (state.session?.id === id) {
    if (state.run?.session.id === id) stop();
    const rest = await store.list();
    await openSession(rest[0] || (await store.create(lastSettings())));
  } else {
    renderSidebar();
  }
}

async function newChat() {
  if (state.session && !state.session.messages.length) {
    $("input").focus();
    return;
  }
  await openSession(await store.create({ ...lastSettings(), ...(state.session?.settings || {}) }));
  $("input").focus();
}

async function openSession(s) {
  // A reply still streaming belongs to the session object its run holds: show that one.
  const prev = state.session;
  if (prev?.draft && prev !== s && !prev.messages.length) store.remove(prev.id); // an untouched new chat
  if (state.run && state.run.session.id === s.id) s = state.run.session;
  else if (store.server && !s.loaded) s = (await store.get(s.id)) || s;
  state.session = s;
  showSettings(s);
  $("chat-title").textContent = titleOf(s);
  renderConversation();
  await renderSidebar();
  document.body.classList.remove("sidebar-open");
  const last = s.messages.at(-1);
  if (store.server && last?.role === "assistant" && last.status === "streaming") resume(s, last);
}

// ------------------------------------------------------------------ conversation
function renderConversation() {
  const box = $("messages");
  box.textContent = "";
  state.views.clear();
  for (const m of state.session.messages) appendMessage(m);
  $("empty").hidden = state.session.messages.length > 0;
  state.stick = true;
  scrollToEnd(true);
}

function appendMessage(m) {
  $("empty").hidden = true;
  if (m.role === "user") {
    $("messages").append(userMessageEl(m));
    return null;
  }
  if (m.role === "tool") { // replies to tool calls: shown in the calls' cards
    for (const v of state.views.values()) if (v.msg.toolCalls?.length) v.flush();
    return null;
  }
  const view = new AssistantView(m, { onFrame: () => scrollToEnd(), decorateTool });
  state.views.set(m.id, view);
  $("messages").append(view.el);
  if (state.run?.msg === m) {
    state.run.view = view; // re-attach a reply that kept streaming while another chat was open
    view.showTyping(state.run.firstAt == null);
  }
  return view;
}

function scrollToEnd(force = false) {
  const chat = $("chat");
  if (force || state.stick) chat.scrollTop = chat.scrollHeight;
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  document.body.classList.toggle("busy", busy);
}

function estimateTokens(text) {
  return Math.max(1, Math.round(text.length / 4));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const STREAM_EVENTS = new Set(["text", "reasoning", "tool", "tool-result"]);

async function send(text, images = []) {
  if (state.run || (!text.trim() && !images.length)) return;
  const s = state.session;
  // tool calls left open are dismissed: their results go first, so the history stays valid
  const tool = dismissOpen(s.messages);
  if (tool) {
    s.messages.push(tool);
    appendMessage(tool);
  }
  const msg = { id: newId("msg"), role: "user", content: text, createdAt: Date.now() };
  if (images.length) msg.images = images;
  s.messages.push(msg);
  if (!s.title) {
    s.title = text.trim().split("\n")[0].slice(0, 60); // an image alone: the next text names the chat
    $("chat-title").textContent = titleOf(s);
  }
  if (!store.server) await store.save(s); // the server commits the user turn itself
  appendMessage(msg);
  state.stick = true;
  scrollToEnd(true);
  if (!store.server) renderSidebar();
  await generate({ text, images, user: msg, tool });
}

// ------------------------------------------------------------------ tool calls the page cannot run
function decorateTool(card, call, msg) {
  if (!state.session?.messages.includes(msg) || !clientCalls(msg).some((c) => c.id === call.id)) return;
  paintCall(card, call, callState(state.session.messages, msg, call), {
    answer: (c, text) => replyToCall(msg, c, { output: text }),
    dismiss: (c) => replyToCall(msg, c, { output: DISMISSED, dismissed: true }),
  });
}

/**
 * The user answered or dismissed one call of `msg`. Once every call of it has
 * a reply: with an answer among them the model goes on (a turn of tool
 * results); all dismissed, they are recorded and the user goes on.
 */
async function replyToCall(msg, call, answer) {
  const s = state.session;
  if (state.run) return;
  const tool = reply(s.messages, msg, call, answer);
  const view = state.views.get(msg.id);
  if (!tool) return view?.flush(); // waiting for the other calls' replies
  s.messages.push(tool);
  view?.flush();
  if (tool.results.some((r) => !r.dismissed)) {
    if (!store.server) await store.save(s);
    await generate({ tool });
    return;
  }
  try {
    if (store.server) Object.assign(tool, await recordToolResults(s.id, tool.results));
    else await store.save(s);
  } catch (e) {
    s.messages.splice(s.messages.indexOf(tool), 1); // not recorded: the calls are open again
    window.alert(`Could not dismiss the tool call: ${e.message || e}`);
  }
  view?.flush();
  $("input").focus();
}

function newRun(s, msg) {
  const run = { controller: new AbortController(), session: s, msg, view: null, firstAt: null, runId: msg.runId || null,
    cursor: { last: 0 }, usage: null, reasoningAt: null, t0: performance.now() };
  state.run = run;
  appendOrAttach(msg);
  run.view.showTyping(run.firstAt == null && !msg.content && !msg.reasoning);
  setBusy(true);
  scrollToEnd(true);
  return run;
}

function appendOrAttach(msg) {
  const view = state.views.get(msg.id);
  if (view) {
    state.run.view = view;
  } else {
    appendMessage(msg);
  }
}

/** Fold one stream's events into the run's message; returns "complete" or "stopped". */
async function consume(run, stream) {
  const msg = run.msg;
  for await (const ev of stream) {
    if (run.firstAt == null && STREAM_EVENTS.has(ev.type)) {
      run.firstAt = performance.now();
      run.view.showTyping(false);
    }
    switch (ev.type) {
      case "run":
        run.runId = ev.run_id;
        voice.follow(ev.run_id).catch((e) => voice.fail(e)); // voice mode: hear it while it is written
        if (run.stopping) stopRun(run.runId).catch(() => run.controller.abort());
        rekey(msg, ev.message_id);
        if (run.user && ev.user_message_id) {
          run.user.id = ev.user_message_id;
          const el = $("messages").querySelector(`.msg.user[data-id="${CSS.escape(run.user.tempId)}"]`);
          if (el) el.dataset.id = ev.user_message_id;
        }
        if (run.tool && ev.tool_message_id) run.tool.id = ev.tool_message_id;
        if (ev.session_id && ev.session_id !== run.session.id) {
          await store.adopt(run.session, ev.session_id);
          renderSidebar();
        }
        break;
      case "text":
        if (run.reasoningAt != null && msg.reasoningMs == null) msg.reasoningMs = performance.now() - run.reasoningAt;
        msg.content += ev.delta;
        if (!run.runId) voice.text(ev.delta); // no server run to follow: the page streams the text to the voice
        break;
      case "reasoning":
        if (run.reasoningAt == null) run.reasoningAt = performance.now();
        msg.reasoning += ev.delta;
        break;
      case "tool": {
        const call = (msg.toolCalls[ev.index] ||= { id: "", name: "", arguments: "" });
        if (ev.id) call.id = ev.id;
        if (ev.name) call.name = ev.name;
        call.arguments = ev.replace ? ev.args : call.arguments + ev.args;
        break;
      }
      case "tool-result":
        (msg.toolResults ||= []).push({ id: ev.id, name: ev.name, output: ev.output, isError: !!ev.isError });
        break;
      case "finish":
        msg.finishReason = ev.reason;
        break;
      case "usage":
        run.usage = ev.usage;
        break;
      case "abort":
        run.view.update();
        return "stopped";
      case "error":
        voice.textEnd();
        throw new ApiError(ev.message, 0, ev.code);
    }
    run.view.update();
  }
  voice.textEnd();
  return "complete";
}

/** A message id can change once the server names it (the run event). */
function rekey(msg, id) {
  if (!id || id === msg.id) return;
  const view = state.views.get(msg.id);
  state.views.delete(msg.id);
  msg.id = id;
  msg.runId = id;
  if (view) {
    state.views.set(id, view);
    view.el.dataset.id = id;
  }
}

/**
 * Generate one assistant reply: for the stored-session API a new turn
 * (`text` and `images`, after the `tool` message's replies to tool calls, if
 * any), otherwise a completion over the page's own history.
 */
async function generate({ text = null, images = [], user = null, tool = null } = {}) {
  const s = state.session;
  const settings = { ...DEFAULTS, ...s.settings };
  const history = s.messages.slice();
  const msg = { id: newId("msg"), role: "assistant", content: "", reasoning: "", toolCalls: [], status: "streaming",
    model: settings.model, createdAt: Date.now() };
  s.messages.push(msg);
  if (user) user.tempId = user.id;
  const run = newRun(s, msg);
  run.user = user;
  run.tool = tool;
  const signal = run.controller.signal;
  try {
    if (!settings.model) throw new ApiError("No model is available: configure a provider and reload.", 0);
    const opts = { model: settings.model, system: settings.system, temperature: settings.temperature,
      maxTokens: settings.maxTokens, extra: samplingParams(settings), signal };
    const streamed = settings.stream !== false; // off: one non-streaming request (POST /chat, stream: false)
    let stream = store.server
      ? (streamed ? streamTurn : completeTurn)({ ...opts, sessionId: s.draft ? undefined : s.id, text, images,
        toolResults: tool?.results, cursor: run.cursor })
      : (streamed ? streamReply : completeReply)({ ...opts, messages: history });
    for (let attempt = 1; ; attempt++) {
      try {
        msg.status = await consume(run, stream);
        break;
      } catch (e) {
        // A dropped connection is not the end of a server-side run: reattach where we left off.
        if (!store.server || !run.runId || e.name !== "TypeError" || signal.aborted || attempt > 3) throw e;
        await sleep(300 * attempt);
        stream = resumeRun({ runId: run.runId, signal, cursor: run.cursor });
      }
    }
  } catch (e) {
    failed(msg, e);
  } finally {
    await settle(run);
  }
}

function failed(msg, e) {
  if (e.name === "AbortError") {
    msg.status = "stopped";
  } else {
    msg.status = "error";
    msg.error = e.message || String(e);
    if (e.name !== "ApiError") console.error("sluiceway: stream failed", e);
  }
}

async function settle(run) {
  const { msg, session: s } = run;
  const end = performance.now();
  msg.toolCalls = (msg.toolCalls || []).filter(Boolean);
  if (run.reasoningAt != null && msg.reasoningMs == null) msg.reasoningMs = end - run.reasoningAt;
  if (!run.resumed) {
    const produced = msg.content + msg.reasoning + msg.toolCalls.map((c) => c.arguments).join("");
    const completion = run.usage?.completion ?? (produced ? estimateTokens(produced) : null);
    const streamSecs = run.firstAt != null ? (end - run.firstAt) / 1000 : 0;
    msg.metrics = {
      ttftMs: run.firstAt != null ? run.firstAt - run.t0 : null,
      durationMs: end - run.t0,
      promptTokens: run.usage?.prompt ?? null,
      completionTokens: completion,
      estimated: run.usage?.completion == null,
      tokPerSec: completion && streamSecs > 0.05 ? completion / streamSecs : null,
    };
  }
  if (state.run === run) state.run = null;
  setBusy(false);
  run.view.showTyping(false);
  run.view.flush();
  if (store.server) {
    await refreshFromServer(s, msg);
  } else {
    await store.save(s);
  }
  if (state.session === s) renderSidebar();
}

/** After a server-side run: take the stored message (its metrics are the server's) and the session title. */
async function refreshFromServer(s, msg) {
  try {
    const fresh = await store.get(s.id);
    const stored = fresh?.messages.find((m) => m.id === msg.id);
    if (fresh && !s.title) s.title = fresh.title;
    if (state.session === s) $("chat-title").textContent = titleOf(s);
    if (!stored || stored.status === "streaming") return;
    if (msg.resumed || msg.metrics?.ttftMs == null) msg.metrics = stored.metrics;
    msg.provider = stored.provider;
    if (msg.status !== "error" && stored.status === "error") {
      msg.status = "error";
      msg.error = stored.error;
    }
    state.views.get(msg.id)?.flush();
  } catch (e) {
    console.warn("sluiceway: could not refresh the chat", e);
  }
}

/** Reattach to a run that is still going on the server (a reload mid-answer). */
async function resume(s, msg) {
  if (state.run) return;
  msg.content = "";
  msg.reasoning = "";
  msg.toolCalls = [];
  msg.toolResults = [];
  msg.status = "streaming";
  msg.resumed = true;
  const run = newRun(s, msg);
  run.resumed = true;
  run.runId = msg.runId || msg.id;
  try {
    msg.status = await consume(run, resumeRun({ runId: run.runId, signal: run.controller.signal, cursor: run.cursor }));
  } catch (e) {
    if (e.status === 404) {
      // The run ended and its log expired: the stored message is the answer.
      msg.status = "complete";
    } else {
      failed(msg, e);
    }
  } finally {
    await settle(run);
    if (state.session === s && msg.status === "complete" && !msg.content) openSession((await store.get(s.id)) || s);
  }
}

function stop() {
  voice.stop(); // barge-in: silent at once
  const run = state.run;
  if (!run) return;
  if (!store.server) {
    run.controller.abort();
    return;
  }
  // Server-owned run: ask the server to stop it (the partial answer is kept and
  // the stream ends with "abort"); cut the connection if that does not happen soon.
  run.stopping = true;
  if (run.runId) stopRun(run.runId).catch(() => run.controller.abort());
  setTimeout(() => state.run === run && run.controller.abort(), 3000);
}

const storedId = (id) => /^[0-9a-f]{32}$/.test(id); // the server's ids; the page's own are "msg_…"

/**
 * Server mode: drop the turns from message `i` on, on the server (stored
 * ones) and here, so the question can be asked again in their place. False
 * (and nothing dropped) when the server refuses, e.g. an answer of this chat
 * is still being generated elsewhere.
 */
async function truncateFrom(s, i) {
  const first = s.messages[i];
  if (!s.draft && storedId(first.id)) {
    try {
      await store.truncate(s.id, first.id);
    } catch (e) {
      window.alert(e.message || String(e));
      return false;
    }
  }
  s.messages.splice(i);
  renderConversation();
  return true;
}

async function regenerate() {
  const s = state.session;
  if (state.run || !s.messages.length) return;
  // The last answer is regenerated, from the input before it: the question, or the replies to tool calls
  // (a dismissal recorded after the answer goes with it).
  const last = s.messages.findLastIndex((m) => m.role === "assistant");
  if (store.server) {
    // Replace the last turn: delete it from the stored chat, then ask its question (or give its tool results) again.
    const i = s.messages.slice(0, Math.max(last, 0)).findLastIndex((m) => m.role === "user" || m.role === "tool");
    if (i < 0) return;
    const { role, content, images, results } = s.messages[i];
    if (!(await truncateFrom(s, i))) return;
    if (role === "user") return send(content, images);
    const tool = { id: newId("tool"), role: "tool", results };
    s.messages.push(tool);
    appendMessage(tool);
    await generate({ tool });
    return;
  }
  if (last >= 0) s.messages.splice(last + 1); // a dismissal recorded after it
  while (s.messages.length && s.messages.at(-1).role === "assistant") {
    const m = s.messages.pop();
    state.views.get(m.id)?.el.remove();
    state.views.delete(m.id);
  }
  if (!s.messages.length) return renderConversation();
  await generate();
}

function startEdit(article) {
  const s = state.session;
  const i = s.messages.findIndex((m) => m.id === article.dataset.id);
  if (i < 0 || state.run) return;
  const bubble = article.querySelector(".bubble");
  const editor = h("div", "editor");
  const ta = h("textarea");
  ta.value = s.messages[i].content;
  ta.setAttribute("aria-label", "Edit message");
  const row = h("div", "editor-actions");
  const cancel = h("button", "btn ghost", "Cancel");
  cancel.type = "button";
  const save = h("button", "btn primary", "Save & send");
  save.type = "button";
  row.append(cancel, save);
  editor.append(ta, row);
  bubble.replaceWith(editor);
  article.classList.add("editing");
  ta.focus();
  ta.setSelectionRange(ta.value.length, ta.value.length);
  autosize(ta);
  const close = () => renderConversation();
  const commit = async () => {
    const text = ta.value;
    if (!text.trim()) return;
    if (store.server) {
      // The edited question replaces this turn and everything after it, on the server too.
      const images = s.messages[i].images;
      if (await truncateFrom(s, i)) await send(text, images);
      else close();
      return;
    }
    s.messages[i].content = text;
    s.messages.splice(i + 1);
    await store.save(s);
    renderConversation();
    await generate();
  };
  cancel.addEventListener("click", close);
  save.addEventListener("click", commit);
  ta.addEventListener("input", () => autosize(ta));
  ta.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      commit();
    } else if (e.key === "Escape") {
      e.stopPropagation();
      close();
    }
  });
}

async function showTrace(messageId) {
  const body = $("drawer-body");
  body.textContent = "Loading…";
  $("drawer").hidden = false;
  try {
    const trace = await getTrace(messageId);
    body.textContent = "";
    for (const [key, value] of Object.entries(trace)) {
      const pre = h("pre", "", typeof value === "string" ? value : JSON.stringify(value, null, 2));
      body.append(h("h3", "", key.replaceAll("_", " ")), pre);
    }
  } catch (e) {
    body.textContent = e.message || String(e);
  }
}

function autosize(ta) {
  ta.style.height = "auto";
  ta.style.height = `${Math.min(ta.scrollHeight, 240)}px`;
}

async function flash(button) {
  const before = button.innerHTML;
  button.innerHTML = ICONS.check;
  button.classList.add("done");
  setTimeout(() => {
    button.innerHTML = before;
    button.classList.remove("done");
  }, 1200);
}

// ------------------------------------------------------------------ wiring
const attachments = new Attachments({ tray: $("attachments"), notice: $("attach-notice") });

function wire() {
  const input = $("input");
  attachments.wire({ button: $("attach"), input: $("attach-input"), textarea: input, dropZone: $("composer-wrap") });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value;
    if ((!text.trim() && !attachments.count) || state.run) return;
    input.value = "";
    autosize(input);
    send(text, attachments.take());
  });
  input.addEventListener("keydown", (e) => {
    // Enter sends; Shift+Enter is a new line; an IME composition's Enter is the IME's.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  input.addEventListener("input", () => autosize(input));
  $("stop").addEventListener("click", stop);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("drawer").hidden) {
      $("drawer").hidden = true;
    } else if (e.key === "Escape" && state.run) {
      e.preventDefault();
      stop();
    }
  });

  $("messages").addEventListener("click", async (e) => {
    const btn = e.target.closest("button");
    if (!btn) return;
    const article = btn.closest(".msg");
    const msg = state.session.messages.find((m) => m.id === article?.dataset.id);
    if (btn.classList.contains("copy-code")) {
      const code = btn.closest(".code-block")?.querySelector("code")?.textContent || "";
      if (await copyText(code)) {
        btn.textContent = "Copied";
        setTimeout(() => (btn.textContent = "Copy"), 1200);
      }
      return;
    }
    switch (btn.dataset.action) {
      case "copy":
        if (msg && (await copyText(msg.content || ""))) flash(btn);
        break;
      case "edit":
        startEdit(article);
        break;
      case "regenerate":
      case "retry":
        regenerate();
        break;
      case "trace":
        if (msg) showTrace(msg.id);
        break;
    }
  });
  $("chat").addEventListener("scroll", () => {
    const c = $("chat");
    state.stick = c.scrollHeight - c.scrollTop - c.clientHeight < 80;
  });
  $("suggestions").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (b && !state.run) send(b.textContent);
  });

  $("new-chat").addEventListener("click", newChat);
  $("search").addEventListener("input", (e) => {
    state.filter = e.target.value;
    renderSidebar({ refresh: false });
  });
  $("session-list").addEventListener("click", async (e) => {
    const btn = e.target.closest("button");
    const item = btn?.closest(".session-item");
    if (!item) return;
    const id = item.dataset.id;
    if (btn.dataset.action === "open" && id !== state.session?.id) {
      const s = await store.get(id);
      if (s) openSession(s);
    } else if (btn.dataset.action === "open") {
      document.body.classList.remove("sidebar-open");
    } else if (btn.dataset.action === "rename") {
      startRename(item);
    } else if (btn.dataset.action === "delete" && askDelete(btn)) {
      deleteSession(id);
    }
  });
  $("session-list").addEventListener("dblclick", (e) => {
    const item = e.target.closest(".session-item");
    if (item && e.target.closest(".session-open")) startRename(item);
  });

  $("model").addEventListener("change", settingsChanged);
  $("system").addEventListener("input", settingsChanged);
  $("temperature").addEventListener("input", settingsChanged);
  $("max-tokens").addEventListener("input", settingsChanged);
  for (const id of ["top-p", "seed", "stop-seqs"]) $(id).addEventListener("input", settingsChanged);
  $("reasoning-effort").addEventListener("change", settingsChanged);
  $("stream").addEventListener("change", settingsChanged);
  $("export-chat").addEventListener("click", () => {
    if (!state.session || !state.session.messages.length) return;
    exportChat(state.session, store.server).catch((e) => console.warn("sluiceway: export failed", e));
  });
  $("toggle-settings").addEventListener("click", () => {
    const panel = $("settings");
    panel.hidden = !panel.hidden;
    $("toggle-settings").setAttribute("aria-expanded", String(!panel.hidden));
    $("toggle-settings").classList.toggle("on", !panel.hidden);
  });
  $("toggle-theme").addEventListener("click", () =>
    setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"),
  );
  $("close-drawer").addEventListener("click", () => ($("drawer").hidden = true));
  $("open-sidebar").addEventListener("click", () => document.body.classList.add("sidebar-open"));
  $("close-sidebar").addEventListener("click", () => document.body.classList.remove("sidebar-open"));
  $("scrim").addEventListener("click", () => document.body.classList.remove("sidebar-open"));
}

/** Ask for the API key; saving it reloads the page with the key in use. */
function askKey(why) {
  const dlg = $("key-dialog");
  if (why) $("key-why").textContent = why;
  $("key-input").value = getApiKey();
  if (!dlg.open) dlg.showModal();
  $("key-input").focus();
}

function wireKey() {
  $("set-key").addEventListener("click", () => askKey("The API key this browser sends. It is kept in this browser only."));
  $("key-form").addEventListener("submit", () => {
    setApiKey($("key-input").value.trim());
    location.reload();
  });
  $("key-clear").addEventListener("click", () => {
    setApiKey("");
    location.reload();
  });
}

// voice mode (voice.js): the answer being written is the last assistant message
const voice = new Voice({
  messageEl: () => [...$("messages").querySelectorAll(".msg.assistant")].pop() || null,
  onTranscript: (text) => {
    if (text.trim()) send(text);
  },
});

async function main() {
  paintIcons();
  setTheme(document.documentElement.dataset.theme || "light");
  wireKey();
  wire();
  wireProviders();
  voice.mount({ toggle: $("voice-toggle"), mic: $("voice-mic"), caption: $("voice-caption"),
                handsFree: $("voice-handsfree") });
  // a provider saved on the Providers page: its models join the picker, and the new one is selected
  window.addEventListener("sluiceway:providers-changed", async (e) => {
    await loadModels();
    const wanted = e.detail?.model || state.models.find((m) => m.provider === e.detail?.provider)?.id;
    $("model").value = pickModel(wanted || $("model").value);
    settingsChanged();
  });
  const forced = new URLSearchParams(location.search).get("store");
  const probe = forced === "local" ? "no" : await serverHasSessions();
  if (probe === "key") {
    askKey(getApiKey() ? "That API key was not accepted. Enter another one." : undefined);
    return;
  }
  const server = probe === "yes";
  store = server ? new ServerSessionStore() : new LocalSessionStore();
  document.documentElement.dataset.store = server ? "server" : "local";
  const [md] = await Promise.all([loadMarkdown(), loadModels()]);
  $("render-mode").textContent =
    (server ? "Chats are saved on the server" : "Chats are saved in this browser") +
    (md ? "" : " · plain-text mode (markdown libraries not installed)");
  const sessions = await store.list();
  await openSession(sessions[0] || (await store.create(lastSettings())));
  document.documentElement.dataset.ready = markdownAvailable() ? "markdown" : "plain";
  $("input").focus();
}

main();
