// Drops an /api/chat stream part-way and resumes it with the `ai` package's
// own DefaultChatTransport (the useChat transport): `reconnectToStream` is
// what `resumeStream()` calls, GET {api}/{chatId}/stream, null on 204.
//
//   node ui_resume.mjs '{"url": "http://127.0.0.1:8000", "model": "up/x", "chatId": "c1", "dropAfter": 3}'
//
// Prints JSON: the chunks seen before the drop, the resumed chunks (the
// transport's parser checks each against uiMessageChunkSchema and throws on
// one that fails), the message readUIMessageStream assembles from the resume, and
// whether a second resume found nothing (204 → null).
import { DefaultChatTransport, readUIMessageStream } from "ai";

const spec = JSON.parse(process.argv[2]);
const api = `${spec.url}/api/chat`;
const transport = new DefaultChatTransport({ api, body: { model: spec.model } });
const messages = [{ id: "u1", role: "user", parts: [{ type: "text", text: "Tell me a story" }] }];

async function take(stream, limit) {
  const seen = [];
  const reader = stream.getReader();
  while (limit === undefined || seen.length < limit) {
    const { done, value } = await reader.read();
    if (done) break;
    seen.push(value);
  }
  return { seen, reader };
}

// 1. start the chat and drop it after `dropAfter` chunks
const abort = new AbortController();
const first = await transport.sendMessages({
  chatId: spec.chatId, messages, trigger: "submit-message", messageId: undefined, abortSignal: abort.signal,
});
const { seen: before, reader } = await take(first, spec.dropAfter);
abort.abort();
await reader.cancel().catch(() => {});
if (spec.pauseMs) await new Promise((r) => setTimeout(r, spec.pauseMs));

// 2. resume: every chunk again from the start, then the live tail
const resumed = await transport.reconnectToStream({ chatId: spec.chatId });
let chunks = null;
let message = null;
const errors = [];
if (resumed !== null) {
  const [forChunks, forMessage] = resumed.tee();
  const collect = take(forChunks).then(({ seen }) => seen);
  for await (const m of readUIMessageStream({ stream: forMessage, onError: (e) => errors.push(String(e)),
    terminateOnError: false })) {
    message = m;
  }
  chunks = await collect;
}

// 3. it has been delivered: nothing left to resume
const again = await transport.reconnectToStream({ chatId: spec.chatId });
process.stdout.write(JSON.stringify({ before, resumed: resumed !== null, chunks, message, errors,
  againNull: again === null }));
