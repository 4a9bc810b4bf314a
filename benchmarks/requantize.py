"""Requantize a GGUF with llama.cpp (a stand-in for `slm quantize` in the eval docs).

Usage: .venv/bin/python benchmarks/requantize.py MODEL {q8_0,q4_0,q4_1,q5_0,q5_1} OUT.gguf [--threads N]

MODEL is an embedded model name or a GGUF path. Requantizing an already quantized file loses
more than quantizing from F16 would; the eval docs measure exactly that loss.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import llama_cpp as ll

from slmkit.store.resolve import resolve_model

TYPES = {"q8_0": ll.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_0": ll.LLAMA_FTYPE_MOSTLY_Q4_0, "q4_1": ll.LLAMA_FTYPE_MOSTLY_Q4_1,
         "q5_0": ll.LLAMA_FTYPE_MOSTLY_Q5_0, "q5_1": ll.LLAMA_FTYPE_MOSTLY_Q5_1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("type", choices=sorted(TYPES))
    parser.add_argument("out", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    params = ll.llama_model_quantize_default_params()
    params.ftype = TYPES[args.type]
    params.allow_requantize = True
    params.nthread = args.threads
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".part")
    if ll.llama_model_quantize(str(resolve_model(args.model).path).encode(), str(tmp).encode(), params) != 0:
        tmp.unlink(missing_ok=True)
        raise SystemExit(f"llama.cpp could not quantize {args.model} to {args.type}")
    tmp.replace(args.out)
    print(f"{args.out} ({args.out.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
