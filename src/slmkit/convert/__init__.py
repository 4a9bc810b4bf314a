"""Model conversion: GGUF or Hugging Face folders to ONNX for onnxruntime-genai, and
sentence-transformers BERT folders to GGUF for llama.cpp."""
