"""MLX engine and conversion pieces that need no model: incremental detokenizing and the config
keys mlx-lm reads."""

from __future__ import annotations

from slmkit.convert.mlx import rope_for_mlx
from slmkit.engine.mlx.text import IncrementalText

# a byte-level vocabulary: "é" is two tokens (its UTF-8 bytes), and token 3 is a space-led word
PIECES = {0: b"<s>", 1: b"\xc3", 2: b"\xa9", 3: b" caf", 4: b"!"}


def _decode(ids: list[int]) -> str:
    return b"".join(PIECES[i] for i in ids).decode("utf-8", errors="replace")


def test_pieces_wait_for_whole_characters_and_keep_leading_spaces() -> None:
    text = IncrementalText(_decode, prompt=[0])
    assert [text.add(t) for t in (3, 1, 2, 4)] == [" caf", "", "é", "!"]
    assert text.flush() == ""


def test_an_unfinished_character_is_released_at_the_end() -> None:
    text = IncrementalText(_decode, prompt=[0])
    assert text.add(1) == ""
    assert text.flush() == "\ufffd"


def test_rope_parameters_are_copied_where_mlx_lm_reads_them() -> None:
    plain = rope_for_mlx({"rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}})
    assert plain["rope_theta"] == 100000.0 and "rope_scaling" not in plain
    scaled = rope_for_mlx({"text_config": {"rope_parameters": {"rope_theta": 5e5, "rope_type": "llama3",
                                                               "factor": 8.0}}})["text_config"]
    assert scaled["rope_theta"] == 5e5 and scaled["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0}
    assert rope_for_mlx({"rope_theta": 1.0, "rope_parameters": {"rope_theta": 2.0}})["rope_theta"] == 1.0
