"""Ollama's model-management requests and responses: /api/pull, /api/delete, /api/copy, /api/create, /api/show."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from slmkit.errors import InvalidRequest
from slmkit.server.protocol.fields import RequestBody
from slmkit.store.blobs import blob_digest
from slmkit.store.modelfile import Profile, add_parameter, parse_modelfile


class _Named(RequestBody):
    """Ollama accepts ``model`` and, from older clients, ``name``."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str | None = None
    name: str | None = None

    def target(self) -> str:
        value = self.model or self.name
        if not value:
            raise InvalidRequest("model is required", param="model")
        return value


class PullRequest(_Named):
    insecure: bool = False
    stream: bool = True


class DeleteRequest(_Named):
    pass


class CopyRequest(RequestBody):
    source: str
    destination: str


class ShowRequest(_Named):
    verbose: bool = False


class Message(BaseModel):
    role: str
    content: str = ""


class CreateRequest(_Named):
    from_: str | None = Field(None, alias="from")
    modelfile: str | None = None  # older clients send the whole Modelfile
    system: str | None = None
    template: str | None = None
    license: str | list[str] | None = None
    parameters: dict[str, Any] | None = None
    messages: list[Message] | None = None
    quantize: str | None = None
    files: dict[str, str] | None = None  # file name -> digest of a blob uploaded with POST /api/blobs
    adapters: dict[str, str] | None = None
    stream: bool = True

    def profile(self) -> Profile:
        """The Modelfile this request describes; structured fields win over ``modelfile``."""
        profile = parse_modelfile(self.modelfile) if self.modelfile else Profile()
        if self.from_:
            profile.from_ = self.from_
        if self.files:
            profile.from_ = self._gguf_blob()
        if self.adapters:
            raise InvalidRequest("adapters (LoRA) are not supported", param="adapters")
        if not profile.from_:
            raise InvalidRequest("from is required (or a modelfile with a FROM line)", param="from")
        if self.system is not None:
            profile.system = self.system
        if self.template is not None:
            profile.template = self.template
        if self.license is not None:
            profile.license = "\n".join(self.license) if isinstance(self.license, list) else self.license
        for key, value in (self.parameters or {}).items():
            if key.lower() == "stop":
                profile.parameters.pop("stop", None)
            add_parameter(profile.parameters, key, value)
        if self.messages:
            profile.messages = [m.model_dump() for m in self.messages]
        return profile


    def _gguf_blob(self) -> str:
        """The one GGUF among ``files``, as a blob reference (``@sha256:<hex>``)."""
        assert self.files
        if self.from_ or len(self.files) != 1 or not next(iter(self.files)).lower().endswith(".gguf"):
            raise InvalidRequest("files must hold exactly one .gguf file, without from (safetensors imports are "
                                 "not supported: convert to GGUF with `slm convert`)", param="files")
        return "@" + blob_digest(next(iter(self.files.values())))


class ProgressResponse(BaseModel):
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class ShowDetails(BaseModel):
    parent_model: str = ""
    format: str = "gguf"
    family: str = ""
    families: list[str] = Field(default_factory=list)
    parameter_size: str = ""
    quantization_level: str = ""


class ShowResponse(BaseModel):
    modelfile: str
    parameters: str = ""
    template: str = ""
    system: str | None = None
    license: str | None = None
    details: ShowDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str
