// The official `openai` package against a local slmkit server: streaming chat and embeddings.
import OpenAI from "openai";

export const CHAT_MODEL = "smollm2-135m-instruct";
export const EMBED_MODEL = "all-minilm-l6-v2";

/** The server's root URL from SLMKIT_URL (default http://127.0.0.1:8080), checked. */
export function serverUrl(env = process.env) {
  const raw = env.SLMKIT_URL ?? "http://127.0.0.1:8080";
  let url;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`SLMKIT_URL must be a URL such as http://127.0.0.1:8080, got ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`SLMKIT_URL must be an http(s) URL, got ${JSON.stringify(raw)}`);
  }
  return url.href.replace(/\/+$/, "");
}

/** An OpenAI client for slmkit's OpenAI API at URL/v1 (no key unless the server has one). */
export function makeClient(url = serverUrl()) {
  return new OpenAI({
    baseURL: `${url}/v1`,
    apiKey: process.env.SLMKIT_API_KEY ?? "unused",
    maxRetries: 0,
    timeout: 120_000,
  });
}

/**
 * Stream a chat reply. `onText` gets each piece as it arrives; the promise resolves to the
 * whole text, the pieces, the finish reason and the token usage.
 */
export async function streamChat(client, prompt, { maxTokens = 48, onText = () => {} } = {}) {
  const stream = await client.chat.completions.create({
    model: CHAT_MODEL,
    messages: [{ role: "user", content: prompt }],
    max_tokens: maxTokens,
    temperature: 0,
    seed: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  let finishReason = null;
  let usage = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (choice?.delta?.content) {
      chunks.push(choice.delta.content);
      onText(choice.delta.content);
    }
    if (choice?.finish_reason) finishReason = choice.finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  return { text: chunks.join(""), chunks, finishReason, usage };
}

/** Sentence vectors (unit length) for `texts`, in order. */
export async function embed(client, texts) {
  const resp = await client.embeddings.create({ model: EMBED_MODEL, input: texts });
  return resp.data.sort((a, b) => a.index - b.index).map((d) => d.embedding);
}

export function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}
