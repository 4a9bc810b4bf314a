"""Chat templates render as Hugging Face renders them; bad templates are clear errors."""

from __future__ import annotations

import pytest

from slmkit.engine.llamacpp.template import ChatTemplate
from slmkit.errors import InvalidRequest


def test_chatml_fallback() -> None:
    out = ChatTemplate(None).render([{"role": "user", "content": "hi"}])
    assert out == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_hf_features_available() -> None:
    src = (
        "{{ bos_token }}{% for m in messages %}{{ m['content'] | tojson }}{% endfor %}"
        "{% if add_generation_prompt %}>{% endif %}"
    )
    out = ChatTemplate(src, bos_token="<s>").render([{"role": "user", "content": "é"}])
    assert out == '<s>"é">'


def test_raise_exception_becomes_invalid_request() -> None:
    src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}"
    with pytest.raises(InvalidRequest, match="first must be user"):
        ChatTemplate(src).render([{"role": "assistant", "content": "x"}])
