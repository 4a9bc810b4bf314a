"""The llama.cpp engine: owning wrappers over llama-cpp-python's low-level API and a
continuous-batching scheduler."""
