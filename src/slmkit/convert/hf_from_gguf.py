"""GGUF -> Hugging Face folder (fp32 safetensors, tokenizer, chat template) through transformers.

Run as ``python -m slmkit.convert.hf_from_gguf GGUF OUT`` by ``slm convert``, in its own process
so that an interruption kills it cleanly and its ~1 GB of torch memory is returned at once.
transformers dequantizes the GGUF's weights (Q4_0/Q4_1/Q8_0/K-quants ...) to float.
"""

from __future__ import annotations

import sys
from pathlib import Path


def gguf_to_hf(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype="float32")
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # the GGUF quantization config is not serializable, and no longer true
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m slmkit.convert.hf_from_gguf GGUF OUT", file=sys.stderr)
        return 2
    gguf_to_hf(Path(argv[0]), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
