// End-to-end check of `infergrid serve` with the official OpenAI Node.js client.
// Usage: node openai_client.mjs BASE_URL MODEL   (exit code 0 when every check passed)
import OpenAI from "openai";
import { zodFunction, zodResponseFormat } from "openai/helpers/zod";
import assert from "node:assert/strict";
import { z } from "zod";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: "unused", maxRetries: 0 });

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (err) {
    console.log(`FAIL ${name}: ${err?.stack ?? err}`);
    process.exitCode = 1;
  }
}

await check("models.list", async () => {
  const models = await client.models.list();
  assert.ok(models.data.some((m) => m.id === model));
});

await check("completions.create", async () => {
  const r = await client.completions.create({ model, prompt: "The sky is", max_tokens: 8, temperature: 0 });
  assert.equal(r.object, "text_completion");
  assert.equal(typeof r.choices[0].text, "string");
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 8);
});

await check("completions.create stream", async () => {
  const stream = await client.completions.create({ model, prompt: "Count:", max_tokens: 6, temperature: 0, stream: true });
  let text = "";
  let finish = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.text ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, "length");
  const whole = await client.completions.create({ model, prompt: "Count:", max_tokens: 6, temperature: 0 });
  assert.equal(text, whole.choices[0].text, "streamed text equals the non-streamed text");
});

await check("chat.completions.create", async () => {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "Hello" }],
    max_tokens: 5, temperature: 0.8, top_p: 0.9, seed: 42, presence_penalty: 0.5, frequency_penalty: 0.5,
    logprobs: true, top_logprobs: 3, user: "e2e",
  });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(r.usage.completion_tokens, 5);
  assert.equal(r.choices[0].logprobs.content.length, 5);
  assert.equal(r.choices[0].logprobs.content[0].top_logprobs.length, 3);
  const again = await client.chat.completions.create({
    model,
    messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "Hello" }],
    max_tokens: 5, temperature: 0.8, top_p: 0.9, seed: 42, presence_penalty: 0.5, frequency_penalty: 0.5,
  });
  assert.equal(again.choices[0].message.content, r.choices[0].message.content, "same seed, same text");
});

await check("chat.completions.create stream with usage", async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "Tell me a story" }], max_tokens: 7, temperature: 0,
    stream: true, stream_options: { include_usage: true },
  });
  let text = "";
  let usage = null;
  let role = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const delta = chunk.choices[0]?.delta;
    if (delta?.role) role = delta.role;
    text += delta?.content ?? "";
  }
  assert.equal(role, "assistant");
  assert.equal(usage.completion_tokens, 7);
  assert.ok(text.length > 0);
});

await check("beta.chat.completions.parse with a zod schema", async () => {
  const Person = z.object({
    name: z.string().max(12),
    age: z.number().int().min(0).max(120),
    pets: z.array(z.enum(["cat", "dog"])).max(2),
  });
  for (const seed of [1, 2, 3]) {
    const r = await client.beta.chat.completions.parse({
      model, messages: [{ role: "user", content: "Describe a person" }], max_tokens: 300, seed,
      response_format: zodResponseFormat(Person, "person"),
    });
    assert.equal(r.choices[0].finish_reason, "stop");
    // The client parsed the content itself; the result must satisfy the zod schema as well.
    Person.parse(r.choices[0].message.parsed);
  }
  await assert.rejects(
    client.chat.completions.create({
      model, messages: [{ role: "user", content: "x" }],
      response_format: { type: "json_schema", json_schema: { name: "n", schema: { not: {} } } },
    }),
    (err) => err instanceof OpenAI.APIError && err.status === 400 && err.param === "response_format",
  );
});

const Weather = z.object({ city: z.string().max(12), unit: z.enum(["c", "f"]) });
// One small tool: the default model's context is 512 tokens, and JSON costs it many.
const weatherTools = [zodFunction({ name: "get_weather", parameters: Weather })];
const weatherQuestion = [{ role: "user", content: "What is the weather in Oslo?" }];

await check("tool calls with tool_choice named", async () => {
  for (const seed of [1, 2, 3]) {
    const r = await client.beta.chat.completions.parse({
      model, messages: weatherQuestion, tools: weatherTools, max_tokens: 100, seed,
      tool_choice: { type: "function", function: { name: "get_weather" } }, parallel_tool_calls: false,
    });
    const choice = r.choices[0];
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.message.tool_calls.length, 1);
    const call = choice.message.tool_calls[0];
    assert.equal(call.function.name, "get_weather");
    // The client parsed the arguments with the zod schema itself.
    Weather.parse(call.function.parsed_arguments);
    Weather.parse(JSON.parse(call.function.arguments));
  }
});

await check("tool calls with tool_choice auto", async () => {
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model, messages: weatherQuestion, tools: weatherTools, tool_choice: "auto", max_tokens: 40, seed,
    });
    const message = r.choices[0].message;
    assert.ok(["stop", "length", "tool_calls"].includes(r.choices[0].finish_reason));
    // Free to answer in text; any call it makes is complete and well-formed.
    for (const call of message.tool_calls ?? []) JSON.parse(call.function.arguments);
    assert.ok(typeof message.content === "string" || (message.tool_calls ?? []).length > 0);
  }
  // The result of a call goes back through the template and gets an answer.
  const call = { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo","unit":"c"}' } };
  const r = await client.chat.completions.create({
    model, tools: weatherTools, max_tokens: 10, seed: 1,
    messages: [...weatherQuestion, { role: "assistant", content: null, tool_calls: [call] },
      { role: "tool", tool_call_id: "call_1", content: "4 degrees" }],
  });
  assert.ok(r.choices[0].message.content !== undefined);
});

await check("streamed tool-call deltas reassembled", async () => {
  const request = {
    model, messages: weatherQuestion, tools: weatherTools, max_tokens: 100, seed: 5,
    tool_choice: { type: "function", function: { name: "get_weather" } }, parallel_tool_calls: false,
  };
  const whole = await client.chat.completions.create(request);
  // The client's stream helper rebuilds message.tool_calls from the delta.tool_calls chunks.
  const stream = client.beta.chat.completions.stream({ ...request, stream: true });
  let deltas = 0;
  for await (const chunk of stream) deltas += chunk.choices[0]?.delta?.tool_calls?.length ?? 0;
  const final = await stream.finalChatCompletion();
  assert.ok(deltas > 1, "the arguments arrive in several deltas");
  const [a, b] = [whole.choices[0].message.tool_calls[0], final.choices[0].message.tool_calls[0]];
  assert.equal(b.function.name, a.function.name);
  assert.equal(b.function.arguments, a.function.arguments);
  Weather.parse(JSON.parse(b.function.arguments));
  assert.equal(final.choices[0].finish_reason, "tool_calls");
});

await check("n: 3", async () => {
  const request = { model, messages: [{ role: "user", content: "Tell me a story" }], max_tokens: 12, seed: 9, n: 3 };
  const r = await client.chat.completions.create(request);
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  assert.equal(new Set(r.choices.map((c) => c.message.content)).size, 3, "each choice its own seed");
  const stream = await client.chat.completions.create({ ...request, stream: true });
  const texts = ["", "", ""];
  for await (const chunk of stream) {
    for (const c of chunk.choices) texts[c.index] += c.delta?.content ?? "";
  }
  assert.deepEqual(texts, r.choices.map((c) => c.message.content));
});

await check("errors become APIError with status", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] }),
    (err) => err instanceof OpenAI.APIError && err.status === 404,
  );
  await assert.rejects(
    client.completions.create({ model, prompt: "x", temperature: 7 }),
    (err) => err instanceof OpenAI.APIError && err.status === 400 && err.param === "temperature",
  );
});
