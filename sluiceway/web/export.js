// "Export": the open chat as a Markdown file. A chat stored on the server is
// exported by the server (GET /sessions/{id}/export?format=markdown, the same
// text the API gives); a chat kept in this browser is written here.
import { withAuth } from "./auth.js";

const url = (path) => new URL(path, document.baseURI).toString();

function fileName(title) {
  const base = (title || "chat").replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-+|-+$/g, "").slice(0, 60);
  return `${base || "chat"}.md`;
}

/** The chat as Markdown, written in the browser (chats kept in this browser). */
export function chatMarkdown(session) {
  const out = [`# ${session.title || "New chat"}`, ""];
  for (const m of session.messages || []) {
    if (m.role === "tool") { // replies to tool calls the page could not run
      for (const r of m.results || []) out.push(`## Tool result \`${r.name}\``, "", "```", r.output, "```", "");
      continue;
    }
    const who = m.role === "user" ? "You" : `Assistant${m.model ? ` (${m.model})` : ""}`;
    out.push(`## ${who}`, "", m.content || "", "");
    for (const [i] of (m.images || []).entries()) out.push(`_(image ${i + 1})_`, "");
    for (const c of m.toolCalls || []) out.push(`Tool call \`${c.name}\`:`, "", "```json", c.arguments || "", "```", "");
  }
  return out.join("\n");
}

export async function exportChat(session, server) {
  let text;
  if (server && !session.draft) {
    const r = await fetch(url(`sessions/${encodeURIComponent(session.id)}/export?format=markdown`),
      { headers: withAuth() });
    if (!r.ok) throw new Error(`export failed (${r.status})`);
    text = await r.text();
  } else {
    text = chatMarkdown(session);
  }
  const href = URL.createObjectURL(new Blob([text], { type: "text/markdown;charset=utf-8" }));
  const a = Object.assign(document.createElement("a"), { href, download: fileName(session.title) });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 1000);
}
