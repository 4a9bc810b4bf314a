#!/usr/bin/env node
// Usage: SLMKIT_URL=http://127.0.0.1:8080 node main.js "your question"
// Streams the model's answer to stdout, then ranks three sentences by their similarity to the
// question (embeddings).
import OpenAI from "openai";
import { cosine, embed, makeClient, serverUrl, streamChat } from "./slmkit.js";

const CANDIDATES = [
  "A simple recipe for baking a loaf of bread in your own oven.",
  "The stock market closed lower after the central bank raised interest rates.",
  "Cats sleep for most of the day.",
];

async function main(argv) {
  const prompt = argv.join(" ").trim();
  if (!prompt) throw new Error('give a question, e.g. node main.js "How do I bake bread at home?"');
  const url = serverUrl();
  const client = makeClient(url);
  try {
    const reply = await streamChat(client, prompt, { onText: (piece) => process.stdout.write(piece) });
    process.stdout.write(`\n[${reply.chunks.length} chunks, finish_reason ${reply.finishReason}, ` +
      `${reply.usage?.completion_tokens} tokens]\n`);
    const [question, ...vectors] = await embed(client, [prompt, ...CANDIDATES]);
    const ranked = CANDIDATES.map((text, i) => ({ text, score: cosine(question, vectors[i]) }))
      .sort((a, b) => b.score - a.score);
    for (const { text, score } of ranked) process.stdout.write(`${score.toFixed(3)}  ${text}\n`);
  } catch (err) {
    if (err instanceof OpenAI.APIConnectionError) {
      throw new Error(`no slmkit server answers at ${url}; start one with \`slm serve\``);
    }
    throw err;
  }
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`error: ${err.message.split("\n")[0]}\n`);
  process.exit(1);
});
