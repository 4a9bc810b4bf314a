"""Request and response models of /tokenize and /detokenize (llama-server's and vLLM's shapes)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from slmkit.errors import InvalidRequest
from slmkit.server.protocol.fields import RequestBody, TokenId


class TokenizeRequest(RequestBody):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    content: str | None = None  # llama-server's name
    prompt: str | None = None  # vLLM's name
    add_special: bool = True
    add_special_tokens: bool | None = None  # vLLM's name for add_special (what lm-eval's remote tokenizer sends)
    with_pieces: bool = False

    @property
    def special(self) -> bool:
        return self.add_special if self.add_special_tokens is None else self.add_special_tokens

    def text(self) -> str:
        text = self.content if self.content is not None else self.prompt
        if text is None:
            raise InvalidRequest("'content' (or 'prompt') is a required property", param="content")
        return text


class Piece(BaseModel):
    id: int
    piece: str


class TokenizeResponse(BaseModel):
    model: str
    tokens: list[int] | list[Piece]
    count: int
    max_model_len: int


class DetokenizeRequest(RequestBody):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    tokens: list[TokenId]


class DetokenizeResponse(BaseModel):
    model: str
    content: str  # llama-server's name
    prompt: str  # vLLM's name, the same text


class TokenizerInfo(BaseModel):
    """vLLM's ``GET /tokenizer_info``: what lm-evaluation-harness's remote tokenizer (the
    ``local-completions`` model's default when the server has it) reads."""

    model: str
    tokenizer_class: str = "slmkit"
    bos_token: str | None
    eos_token: str | None
    pad_token: str | None = None
    model_max_length: int
