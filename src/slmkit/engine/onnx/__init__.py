"""The ONNX Runtime GenAI engine: ONNX models converted with `slm convert --to onnx`."""
