// Run against a live server: SLMKIT_URL=http://127.0.0.1:8080 node --test
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import OpenAI from "openai";
import { cosine, embed, makeClient, serverUrl, streamChat } from "../slmkit.js";

if (!process.env.SLMKIT_URL) {
  throw new Error("set SLMKIT_URL to a running slmkit server, e.g. SLMKIT_URL=http://127.0.0.1:8080 node --test");
}
const client = makeClient(serverUrl());
const MAIN = fileURLToPath(new URL("../main.js", import.meta.url));

function runMain(args, env = {}) {
  return spawnSync(process.execPath, [MAIN, ...args], {
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 120_000,
  });
}

test("a chat reply streams in several chunks", async () => {
  const seen = [];
  const reply = await streamChat(client, "Name three colors of the rainbow.", { onText: (t) => seen.push(t) });
  assert.ok(reply.chunks.length > 1, `one chunk only: ${JSON.stringify(reply.chunks)}`);
  assert.deepEqual(seen, reply.chunks);
  assert.ok(reply.text.trim().length > 0);
  assert.ok(["stop", "length"].includes(reply.finishReason), reply.finishReason);
  assert.ok(reply.usage.completion_tokens >= 1 && reply.usage.completion_tokens <= 48);
  assert.equal(reply.usage.total_tokens, reply.usage.prompt_tokens + reply.usage.completion_tokens);
});

test("max_tokens cuts the stream with finish_reason length", async () => {
  const reply = await streamChat(client, "Write a long story about a dragon.", { maxTokens: 4 });
  assert.equal(reply.finishReason, "length");
  assert.equal(reply.usage.completion_tokens, 4);
});

test("embeddings: 384-dimensional unit vectors, related texts closer", async () => {
  const [query, related, unrelated] = await embed(client, [
    "How do I bake bread at home?",
    "A simple recipe for baking a loaf of bread in your own oven.",
    "The stock market closed lower after the central bank raised interest rates.",
  ]);
  for (const v of [query, related, unrelated]) {
    assert.equal(v.length, 384);
    assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-3);
  }
  assert.ok(cosine(query, related) > cosine(query, unrelated) + 0.1,
    `related ${cosine(query, related)} vs unrelated ${cosine(query, unrelated)}`);
});

test("an unknown model is an OpenAI-shaped error", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "hi" }] }),
    (err) => {
      assert.ok(err instanceof OpenAI.APIError, String(err));
      assert.equal(err.status, 404);
      assert.equal(err.param, "model");
      assert.equal(err.code, "model_not_found");
      return true;
    },
  );
});

test("main.js streams an answer and ranks the sentences", () => {
  const out = runMain(["How do I bake bread at home?"]);
  assert.equal(out.status, 0, out.stderr);
  const lines = out.stdout.trimEnd().split("\n");
  assert.match(lines.at(-4), /^\[\d+ chunks, finish_reason (stop|length), \d+ tokens\]$/);
  assert.match(lines.at(-3), /^\d\.\d{3} {2}A simple recipe for baking a loaf of bread/);
});

test("main.js: bad input is one line on stderr and exit 1", () => {
  for (const [args, env, needle] of [
    [[], {}, "give a question"],
    [["hi"], { SLMKIT_URL: "ftp://example" }, "http(s) URL"],
    [["hi"], { SLMKIT_URL: "http://127.0.0.1:9" }, "no slmkit server answers"],
  ]) {
    const out = runMain(args, env);
    assert.equal(out.status, 1, out.stdout);
    assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
    assert.ok(out.stderr.includes(needle), out.stderr);
  }
});
