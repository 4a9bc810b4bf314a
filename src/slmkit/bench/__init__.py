"""Measure serving: an HTTP load generator for OpenAI- and Ollama-compatible servers
(`slm bench URL`), and an in-process engine bench (`slm bench --engine llamacpp`)."""
