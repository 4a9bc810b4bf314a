"""Model conversion: to ONNX for onnxruntime-genai (and GGUF for llama.cpp)."""
