// Reads sluiceway's /api/chat with the `ai` package's own client pieces and
// prints what it saw as JSON for the pytest side to check.
//
//   node ui_stream.mjs '{"url": "http://127.0.0.1:8000", "model": "up/x", "messages": [...]}'
//
// 1. A raw fetch parsed by parseJsonEventStream + uiMessageChunkSchema: every
//    chunk must validate (the schema the browser client applies).
// 2. The same request through DefaultChatTransport (the useChat transport, so
//    the request body is exactly what useChat sends, `model` via its `body`
//    option) and readUIMessageStream, which enforces the chunk sequence rules
//    and assembles the assistant UIMessage.
import {
  DefaultChatTransport,
  parseJsonEventStream,
  readUIMessageStream,
  uiMessageChunkSchema,
} from "ai";

const spec = JSON.parse(process.argv[2]);
const api = `${spec.url}/api/chat`;
const messages = spec.messages ?? [
  { id: "u1", role: "user", parts: [{ type: "text", text: "Weather in Oslo?" }] },
];
const extra = { model: spec.model, ...(spec.body ?? {}) };

async function rawChunks() {
  const res = await fetch(api, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id: "chat-raw", messages, trigger: "submit-message", messageId: undefined, ...extra }),
  });
  const header = res.headers.get("x-vercel-ai-ui-message-stream");
  const valid = [];
  const invalid = [];
  const reader = parseJsonEventStream({ stream: res.body, schema: uiMessageChunkSchema }).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (value.success) valid.push(value.value);
    else invalid.push({ raw: value.rawValue, error: String(value.error) });
  }
  return { status: res.status, header, valid, invalid };
}

async function assembled() {
  const transport = new DefaultChatTransport({ api, body: extra });
  const stream = await transport.sendMessages({
    chatId: "chat-1",
    messages,
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
  const errors = [];
  let last = null;
  for await (const message of readUIMessageStream({
    stream,
    onError: (e) => errors.push(String(e)),
    terminateOnError: false,
  })) {
    last = message;
  }
  return { message: last, errors };
}

const raw = await rawChunks();
let ui;
try {
  ui = await assembled();
} catch (e) {
  ui = { message: null, errors: [String(e)], thrown: true };
}
process.stdout.write(JSON.stringify({ raw, ui }));
