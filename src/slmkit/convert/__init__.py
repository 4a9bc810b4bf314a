"""Model conversion: GGUF or Hugging Face folders to ONNX for onnxruntime-genai (the builder, or
Olive), and Hugging Face folders (llama-family causal LMs, BERT embedders) to GGUF for llama.cpp."""
