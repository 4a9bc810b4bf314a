// The slmkit chat page: no framework, no CDN. Talks to /api/tags, /api/show and
// /v1/chat/completions (streamed, server-sent events).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { history: [], controller: null };
const KEY_ITEM = "slmkit-api-key";

// fetch with the API key this tab was given; a 401 asks for one (kept in sessionStorage, so it
// is gone when the tab closes) and tries again once.
async function api(url, options = {}) {
  const withKey = () => {
    const key = sessionStorage.getItem(KEY_ITEM);
    const headers = { ...(options.headers || {}) };
    if (key) headers.Authorization = `Bearer ${key}`;
    return fetch(url, { ...options, headers });
  };
  let response = await withKey();
  if (response.status === 401) {
    const key = window.prompt("This server requires an API key (slm keys create):");
    if (key) {
      sessionStorage.setItem(KEY_ITEM, key.trim());
      response = await withKey();
    }
  }
  return response;
}

function addMessage(role, text, model) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  if (model) div.dataset.model = model;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

async function loadModels() {
  const listing = await api("/api/tags");
  if (!listing.ok) {
    $("status").textContent = listing.status === 401 ? "This server requires an API key; reload to enter one."
      : `The server answered ${listing.status}.`;
    return;
  }
  const tags = await listing.json();
  const select = $("model");
  for (const entry of tags.models) {
    const show = await api("/api/show", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: entry.name }),
    });
    const info = show.ok ? await show.json() : { capabilities: [] };
    if (!(info.capabilities || []).includes("completion")) continue;
    const option = document.createElement("option");
    option.value = option.textContent = entry.name.replace(/:latest$/, "");  // the served name, as /v1/models has it
    select.appendChild(option);
  }
  $("status").textContent = select.options.length ? "" : "No chat model is available.";
}

function requestMessages() {
  const system = $("system").value.trim();
  return system ? [{ role: "system", content: system }, ...state.history] : [...state.history];
}

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of frame.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
  $("status").textContent = busy ? "Generating…" : "";
}

async function send(text) {
  state.history.push({ role: "user", content: text });
  addMessage("user", text);
  const bubble = addMessage("assistant", "");
  bubble.classList.add("streaming");
  state.controller = new AbortController();
  setBusy(true);
  let reply = "";
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      signal: state.controller.signal,
      body: JSON.stringify({
        model: $("model").value, messages: requestMessages(), stream: true,
        temperature: Number($("temperature").value),
        max_tokens: Number($("max-tokens").value) || undefined,
      }),
    });
    if (!response.ok) throw new Error((await response.json()).error.message);
    for await (const data of sseEvents(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      bubble.dataset.model = chunk.model;
      for (const choice of chunk.choices || []) {
        reply += choice.delta.content || "";
        if (choice.finish_reason) bubble.dataset.finish = choice.finish_reason;
      }
      bubble.textContent = reply;
      $("log").scrollTop = $("log").scrollHeight;
    }
  } catch (err) {
    if (err.name === "AbortError") {
      bubble.dataset.finish = "stopped";
    } else {
      bubble.classList.add("error");
      bubble.textContent = `Error: ${err.message}`;
    }
  } finally {
    bubble.classList.remove("streaming");
    bubble.classList.add("done");
    if (reply) state.history.push({ role: "assistant", content: reply });
    state.controller = null;
    setBusy(false);
  }
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || state.controller) return;
  $("prompt").value = "";
  send(text);
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => state.controller && state.controller.abort());
$("clear").addEventListener("click", () => {
  state.history = [];
  $("log").textContent = "";
});
loadModels().catch((err) => { $("status").textContent = `Cannot list models: ${err.message}`; });
