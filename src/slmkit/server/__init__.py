"""The HTTP server: OpenAI (and later Ollama) APIs over one generation service."""
