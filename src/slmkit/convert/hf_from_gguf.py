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
    _restore_digit_splitting(gguf, out / "tokenizer.json")


# llama.cpp pre-tokenizers that split every digit apart before the GPT-2 regex; transformers
# rebuilds these GGUF tokenizers with the plain GPT-2 pre-tokenizer, which keeps runs of digits
# together and so tokenizes numbers differently from the model's own tokenizer.
_DIGITS_THEN_GPT2 = ("smollm", "starcoder", "refact", "codeshell")


def _restore_digit_splitting(gguf: Path, tokenizer_json: Path) -> None:
    import json

    from gguf import GGUFReader

    field = GGUFReader(gguf).fields.get("tokenizer.ggml.pre")
    if field is None or field.contents() not in _DIGITS_THEN_GPT2 or not tokenizer_json.is_file():
        return
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                                    byte_level]}
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m slmkit.convert.hf_from_gguf GGUF OUT", file=sys.stderr)
        return 2
    gguf_to_hf(Path(argv[0]), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
