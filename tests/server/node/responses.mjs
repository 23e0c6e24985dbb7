// The official openai npm package's Responses API against `msgflux serve`
// (run by tests/server/test_responses.py).
// Usage: node responses.mjs BASE_URL API_KEY MODEL -> prints one JSON object with what it saw.
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const out = {};

const first = await client.responses.create({ model, input: "My name is Ada." });
out.text = first.output_text;
out.model = first.model;

const second = await client.responses.create({
  model,
  input: "What is my name?",
  previous_response_id: first.id,
});
out.continued = second.status;

const stream = client.responses.stream({ model, input: "hi", store: false });
let streamed = "";
for await (const event of stream) {
  if (event.type === "response.output_text.delta") streamed += event.delta;
}
out.streamed = streamed;
const final = await stream.finalResponse();
out.final = final.output
  .filter((item) => item.type === "message")
  .flatMap((item) => item.content.map((part) => part.text))
  .join("");

const weather = {
  type: "function",
  name: "get_weather",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  strict: false,
};
const called = await client.responses.create({ model, input: "Weather?", tools: [weather] });
const call = called.output.find((item) => item.type === "function_call");
out.call = call ? { name: call.name, arguments: JSON.parse(call.arguments) } : null;
if (call) {
  const answered = await client.responses.create({
    model,
    tools: [weather],
    previous_response_id: called.id,
    input: [{ type: "function_call_output", call_id: call.call_id, output: "22C" }],
  });
  out.afterTool = answered.output_text;
}

out.retrieved = (await client.responses.retrieve(first.id)).id === first.id;
out.items = (await client.responses.inputItems.list(first.id)).data.length;
await client.responses.delete(first.id);
try {
  await client.responses.retrieve(first.id);
  out.afterDelete = "no error";
} catch (err) {
  out.afterDelete = err.status;
}
console.log(JSON.stringify(out));
