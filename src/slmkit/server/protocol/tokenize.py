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
    with_pieces: bool = False

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
    content: str
