// End-to-end check of `infergrid serve` with the official OpenAI Node.js client.
// Usage: node openai_client.mjs BASE_URL MODEL   (exit code 0 when every check passed)
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
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
