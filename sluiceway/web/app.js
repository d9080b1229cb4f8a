// The chat page: sessions sidebar, model picker, settings, composer and the
// streaming loop. Server access lives in api.js and persistence in store.js,
// so moving to the server's sessions API swaps those two, not this file.

import { ApiError, listModels, streamReply } from "./api.js";
import { ICONS, paintIcons } from "./icons.js";
import { copyText, loadMarkdown, markdownAvailable } from "./markdown.js";
import { AssistantView, h, userMessageEl } from "./messages.js";
import { LocalSessionStore, newId } from "./store.js";

const $ = (id) => document.getElementById(id);
const store = new LocalSessionStore();
const DEFAULTS = { model: "", system: "", temperature: 0.7, maxTokens: "" };
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
    state.models = await listModels();
  } catch (e) {
    console.error("sluiceway: could not list models", e);
    state.models = [];
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
  return ids[0] || "";
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
  const st = { ...DEFAULTS, ...s.settings };
  st.model = pickModel(st.model);
  s.settings = st;
  $("model").value = st.model;
  $("system").value = st.system;
  $("temperature").value = st.temperature;
  $("temperature-out").textContent = Number(st.temperature).toFixed(2);
  $("max-tokens").value = st.maxTokens;
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

async function renderSidebar() {
  const list = $("session-list");
  const q = state.filter.trim().toLowerCase();
  const sessions = (await store.list()).filter(
    (s) =>
      !q ||
      titleOf(s).toLowerCase().includes(q) ||
      s.messages.some((m) => (m.content || "").toLowerCase().includes(q)),
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
  state.session = s;
  showSettings(s);
  $("chat-title").textContent = titleOf(s);
  renderConversation();
  await renderSidebar();
  document.body.classList.remove("sidebar-open");
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
  const view = new AssistantView(m, { onFrame: () => scrollToEnd() });
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

async function send(text) {
  if (state.run || !text.trim()) return;
  const s = state.session;
  const msg = { id: newId("msg"), role: "user", content: text, createdAt: Date.now() };
  s.messages.push(msg);
  if (!s.title) {
    s.title = text.trim().split("\n")[0].slice(0, 60);
    $("chat-title").textContent = s.title;
  }
  await store.save(s);
  appendMessage(msg);
  state.stick = true;
  scrollToEnd(true);
  renderSidebar();
  await generate();
}

async function generate() {
  const s = state.session;
  const settings = { ...DEFAULTS, ...s.settings };
  const history = s.messages.slice();
  const msg = {
    id: newId("msg"),
    role: "assistant",
    content: "",
    reasoning: "",
    toolCalls: [],
    status: "streaming",
    model: settings.model,
    createdAt: Date.now(),
  };
  s.messages.push(msg);
  const controller = new AbortController();
  const run = { controller, session: s, msg, view: null, firstAt: null };
  state.run = run;
  appendMessage(msg);
  run.view.showTyping(true);
  setBusy(true);
  scrollToEnd(true);

  const t0 = performance.now();
  let usage = null;
  let reasoningAt = null;
  try {
    if (!settings.model) throw new ApiError("No model is available: configure a provider and reload.", 0);
    const stream = streamReply({
      model: settings.model,
      system: settings.system,
      messages: history,
      temperature: settings.temperature,
      maxTokens: settings.maxTokens,
      signal: controller.signal,
    });
    for await (const ev of stream) {
      if (run.firstAt == null && (ev.type === "text" || ev.type === "reasoning" || ev.type === "tool")) {
        run.firstAt = performance.now();
        run.view.showTyping(false);
      }
      switch (ev.type) {
        case "text":
          if (reasoningAt != null && msg.reasoningMs == null) msg.reasoningMs = performance.now() - reasoningAt;
          msg.content += ev.delta;
          break;
        case "reasoning":
          if (reasoningAt == null) reasoningAt = performance.now();
          msg.reasoning += ev.delta;
          break;
        case "tool": {
          const call = (msg.toolCalls[ev.index] ||= { id: "", name: "", arguments: "" });
          if (ev.id) call.id = ev.id;
          if (ev.name) call.name = ev.name;
          call.arguments += ev.args;
          break;
        }
        case "finish":
          msg.finishReason = ev.reason;
          break;
        case "usage":
          usage = ev.usage;
          break;
        case "error":
          throw new ApiError(ev.message, 0, ev.code);
      }
      run.view.update();
    }
    msg.status = "complete";
  } catch (e) {
    if (e.name === "AbortError") {
      msg.status = "stopped";
    } else {
      msg.status = "error";
      msg.error = e.message || String(e);
      if (e.name !== "ApiError") console.error("sluiceway: stream failed", e);
    }
  } finally {
    const end = performance.now();
    msg.toolCalls = msg.toolCalls.filter(Boolean);
    if (reasoningAt != null && msg.reasoningMs == null) msg.reasoningMs = end - reasoningAt;
    const produced = msg.content + msg.reasoning + msg.toolCalls.map((c) => c.arguments).join("");
    const completion = usage?.completion ?? (produced ? estimateTokens(produced) : null);
    const streamSecs = run.firstAt != null ? (end - run.firstAt) / 1000 : 0;
    msg.metrics = {
      ttftMs: run.firstAt != null ? run.firstAt - t0 : null,
      durationMs: end - t0,
      promptTokens: usage?.prompt ?? null,
      completionTokens: completion,
      estimated: usage?.completion == null,
      tokPerSec: completion && streamSecs > 0.05 ? completion / streamSecs : null,
    };
    state.run = null;
    setBusy(false);
    run.view.showTyping(false);
    run.view.flush();
    await store.save(s);
    if (state.session === s) renderSidebar();
  }
}

function stop() {
  state.run?.controller.abort();
}

async function regenerate() {
  const s = state.session;
  if (state.run || !s.messages.length) return;
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
function wire() {
  const input = $("input");
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value;
    if (!text.trim() || state.run) return;
    input.value = "";
    autosize(input);
    send(text);
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
    if (e.key === "Escape" && state.run) {
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
    renderSidebar();
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
  $("toggle-settings").addEventListener("click", () => {
    const panel = $("settings");
    panel.hidden = !panel.hidden;
    $("toggle-settings").setAttribute("aria-expanded", String(!panel.hidden));
    $("toggle-settings").classList.toggle("on", !panel.hidden);
  });
  $("toggle-theme").addEventListener("click", () =>
    setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"),
  );
  $("open-sidebar").addEventListener("click", () => document.body.classList.add("sidebar-open"));
  $("close-sidebar").addEventListener("click", () => document.body.classList.remove("sidebar-open"));
  $("scrim").addEventListener("click", () => document.body.classList.remove("sidebar-open"));
}

async function main() {
  paintIcons();
  setTheme(document.documentElement.dataset.theme || "light");
  wire();
  const [md] = await Promise.all([loadMarkdown(), loadModels()]);
  $("render-mode").textContent = md ? "" : "Plain-text mode: markdown libraries not installed";
  const sessions = await store.list();
  await openSession(sessions[0] || (await store.create(lastSettings())));
  document.documentElement.dataset.ready = markdownAvailable() ? "markdown" : "plain";
  $("input").focus();
}

main();
