// The official openai npm package against `msgflux serve` (run by tests/server/test_node.py).
// Usage: node client.mjs BASE_URL API_KEY -> prints one JSON object with what it saw.
import OpenAI from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const out = {};

const completion = await client.chat.completions.create({
  model: "chat",
  messages: [{ role: "user", content: "Who was Frank Rosenblatt?" }],
});
out.text = completion.choices[0].message.content;
out.model = completion.model;

const { data, response } = await client.chat.completions
  .create({ model: "chat", messages: [{ role: "user", content: "hi" }] })
  .withResponse();
out.deployment = response.headers.get("x-msgflux-deployment");
out.fallbacks = response.headers.get("x-msgflux-fallbacks");
out.id = data.id;

const stream = await client.chat.completions.create({
  model: "chat",
  messages: [{ role: "user", content: "hi" }],
  stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let usage = null;
for await (const chunk of stream) {
  if (chunk.choices.length) streamed += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
out.streamed = streamed;
out.streamUsage = usage;

const embedding = await client.embeddings.create({ model: "embed", input: ["a", "b"] });
out.embeddings = embedding.data.length;

for (const [name, call] of [
  ["notFound", () => client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] })],
  ["badRequest", () => client.chat.completions.create({ model: "chat", messages: [] })],
  ["unauthorized", () => new OpenAI({ baseURL, apiKey: "wrong-key-123", maxRetries: 0 }).models.list()],
]) {
  try {
    await call();
    out[name] = "no error";
  } catch (err) {
    out[name] = { status: err.status, class: err.constructor.name, message: err.message };
  }
}
console.log(JSON.stringify(out));
