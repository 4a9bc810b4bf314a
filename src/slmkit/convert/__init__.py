"""Model conversion: sentence-transformers BERT to GGUF (and, later, quantization)."""
