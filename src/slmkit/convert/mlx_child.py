"""A Hugging Face folder -> an MLX model folder with mlx-lm's converter, then a load check.

Run as ``python -m slmkit.convert.mlx_child HF OUT BITS GROUP_SIZE`` by ``slm convert --to mlx``
(BITS 0: float16, no quantization), in its own process so that an interruption kills it cleanly.
"""

from __future__ import annotations

import sys
from pathlib import Path


def convert(hf: Path, out: Path, bits: int, group_size: int) -> None:
    from mlx_lm.convert import convert as mlx_convert
    from mlx_lm.utils import load_model, load_tokenizer

    # float16 for what stays unquantized (norms, scales), as MLX models for Apple silicon ship
    mlx_convert(str(hf), str(out), quantize=bits > 0, q_bits=bits or None, q_group_size=group_size or None,
                dtype="float16")
    load_model(out, lazy=True, strict=True)  # every weight the architecture needs, with the right shape
    tokenizer = load_tokenizer(out)  # type: ignore[no-untyped-call]
    if not tokenizer.encode("hello"):
        raise SystemExit("the converted tokenizer encodes nothing")


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m slmkit.convert.mlx_child HF OUT BITS GROUP_SIZE", file=sys.stderr)
        return 2
    convert(Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
