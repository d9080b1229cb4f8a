// Tool calls this page cannot run. A model may end its answer with calls to
// tools the client is meant to run (finish reason tool_calls, and no result
// from the server, unlike an agent's tools). The page has no such tools, so
// each call is a card that says so, with two ways on:
//
//   Answer   the user types the result; it goes back as a `tool` message with
//            the call's id, and the model goes on from it.
//   Dismiss  a result saying the user dismissed the call is recorded without
//            asking the model; the user goes on with a new message.
//
// Dismiss records a result rather than dropping the call: strict upstreams
// (OpenAI, Anthropic) reject a history where an assistant tool call has no
// result, and the model should know that its call came to nothing. Sending a
// new message while calls are open dismisses them the same way. The replies
// to one answer's calls go together, once every call has one.
//
// In the page's conversation a reply is a message {role: "tool", results:
// [{id: call id, name, output, dismissed}]}, which is not drawn itself: its
// results show in the calls' cards.

import { newId } from "./store.js";

export const DISMISSED = "The user dismissed this tool call: it was not run and there is no result.";

/** The calls of an assistant message that nobody ran: not the server (an agent's results), not cut short. */
export function clientCalls(msg) {
  const ran = new Set((msg.toolResults || []).map((r) => r.id));
  return (msg.toolCalls || []).filter((c) => c && c.id && !c.partial && !ran.has(c.id));
}

/** call id → {id, name, output, dismissed}: the replies in the conversation's tool messages. */
export function storedReplies(messages) {
  const out = new Map();
  for (const m of messages) if (m.role === "tool") for (const r of m.results || []) out.set(r.id, r);
  return out;
}

/**
 * The answer whose calls may still be answered: the conversation's last
 * answer, complete, followed by tool messages only, with a call left
 * without a reply. Null when there is none.
 */
export function openAnswer(messages) {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m.role === "tool") continue;
    if (m.role !== "assistant" || m.status !== "complete") return null;
    const replies = storedReplies(messages.slice(i + 1));
    return clientCalls(m).some((c) => !replies.has(c.id)) ? m : null;
  }
  return null;
}

/**
 * Note the user's reply to one call of `msg` (the open answer). When every
 * call has one, returns the tool message to add (then the drafts are gone);
 * until then null, and the replies wait on `msg.drafts`.
 */
export function reply(messages, msg, call, { output, dismissed = false }) {
  (msg.drafts ||= {})[call.id] = { id: call.id, name: call.name, output, dismissed };
  const stored = storedReplies(messages);
  const calls = clientCalls(msg).filter((c) => !stored.has(c.id));
  if (calls.some((c) => !msg.drafts[c.id])) return null;
  const results = calls.map((c) => msg.drafts[c.id]);
  delete msg.drafts;
  return { id: newId("tool"), role: "tool", results };
}

/** A new message goes out while calls are open: they are dismissed. The tool message to add first, or null. */
export function dismissOpen(messages) {
  const msg = openAnswer(messages);
  if (!msg) return null;
  const stored = storedReplies(messages);
  let tool = null;
  for (const c of clientCalls(msg).filter((x) => !stored.has(x.id))) {
    tool = reply(messages, msg, c, msg.drafts?.[c.id] || { output: DISMISSED, dismissed: true });
  }
  return tool;
}

/** What a call's card shows: "open" (Answer / Dismiss), "answered", "dismissed" or "skipped" (the chat went on). */
export function callState(messages, msg, call) {
  const stored = storedReplies(messages).get(call.id);
  const draft = msg.drafts?.[call.id];
  const r = stored || draft;
  if (r) return { state: r.dismissed ? "dismissed" : "answered", reply: r, waiting: !stored };
  return { state: openAnswer(messages) === msg ? "open" : "skipped", reply: null, waiting: false };
}

const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
};

function button(label, cls, aria) {
  const b = el("button", cls, label);
  b.type = "button";
  if (aria) b.setAttribute("aria-label", aria);
  return b;
}

const STATE_TEXT = { open: "waiting for you", answered: "answered", dismissed: "dismissed", skipped: "not answered" };
const NOTE = {
  open: "This chat page cannot run this tool: it runs in the app the model was meant to talk to. " +
    "Type its result to let the model go on, or dismiss it.",
  skipped: "Not run: no result was given for it.",
};

/**
 * Draw (or update) the client part of a call's card. `on.answer(call, text)`
 * and `on.dismiss(call)` are called by its buttons. Idempotent, so that it
 * can run on every render: an answer being typed is left alone.
 */
export function paintCall(card, call, st, on) {
  let ui = card.querySelector(".tool-client");
  if (!ui) {
    ui = el("div", "tool-client");
    const note = el("p", "tool-note");
    const actions = el("div", "tool-actions");
    const answer = button("Answer", "btn primary tool-answer", `Answer ${call.name || "the tool call"}`);
    const dismiss = button("Dismiss", "btn ghost tool-dismiss", `Dismiss ${call.name || "the tool call"}`);
    actions.append(answer, dismiss);
    const form = el("div", "tool-form");
    form.hidden = true;
    const ta = el("textarea", "tool-input");
    ta.rows = 3;
    ta.placeholder = "The tool's result (text or JSON)";
    ta.setAttribute("aria-label", `Result of ${call.name || "the tool call"}`);
    const row = el("div", "editor-actions");
    const cancel = button("Cancel", "btn ghost tool-cancel");
    const send = button("Send result", "btn primary tool-send");
    row.append(cancel, send);
    form.append(ta, row);
    const out = el("pre", "tool-reply");
    ui.append(note, actions, form, out);
    card.append(ui);

    const close = () => {
      form.hidden = true;
      actions.hidden = false;
      answer.focus();
    };
    const submit = () => {
      if (!ta.value.trim()) return ta.focus();
      form.hidden = true;
      on.answer(call, ta.value);
    };
    answer.addEventListener("click", () => {
      actions.hidden = true;
      form.hidden = false;
      ta.focus();
    });
    dismiss.addEventListener("click", () => on.dismiss(call));
    cancel.addEventListener("click", close);
    send.addEventListener("click", submit);
    ta.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        submit();
      } else if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation(); // not the page's Esc (stop the answer)
        close();
      }
    });
  }
  card.classList.add("client");
  card.dataset.state = st.state;
  const stateText = STATE_TEXT[st.state];
  card.querySelector(".tool-state").textContent = st.waiting ? `${stateText} · sent with the other calls' replies`
    : stateText;
  const note = ui.querySelector(".tool-note");
  note.textContent = NOTE[st.state] || "";
  note.hidden = !note.textContent;
  const open = st.state === "open";
  if (!open) ui.querySelector(".tool-form").hidden = true;
  ui.querySelector(".tool-actions").hidden = !open || !ui.querySelector(".tool-form").hidden;
  const out = ui.querySelector(".tool-reply");
  const text = { answered: st.reply?.output, dismissed: "Dismissed: the tool was not run." }[st.state] || "";
  if (out.textContent !== text) out.textContent = text;
  out.hidden = !text;
}
