"""Measure model quality: perplexity, a deterministic task suite, and quantization drift."""
