"""The local model store and model name resolution."""
