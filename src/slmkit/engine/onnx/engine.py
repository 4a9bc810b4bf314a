"""OnnxEngine: the Engine protocol over an onnxruntime-genai model folder."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from slmkit.engine.admission import Job, JobStream, check_tokens
from slmkit.engine.base import GenerationRequest, ModelInfo
from slmkit.engine.hf_files import folder_chat_template
from slmkit.engine.onnx.decoder import Decoder
from slmkit.engine.onnx.runtime import genai, read_genai_config
from slmkit.engine.onnx.sampling import check_supported
from slmkit.engine.onnx.scheduler import OnnxScheduler
from slmkit.errors import ModelLoadError
from slmkit.settings import EngineSettings


class OnnxEngine:
    """An ONNX model (genai_config.json, model.onnx, tokenizer): onnxruntime-genai's tokenizer, the
    decoder run by onnxruntime with continuous batching (scheduler.py, decoder.py)."""

    def __init__(self, name: str, folder: Path, settings: EngineSettings) -> None:
        og = genai()
        self.name = name
        self.path = folder
        config = read_genai_config(folder)
        model_cfg = config["model"]
        self._vocab = int(model_cfg.get("vocab_size") or 0)
        trained = int(model_cfg.get("context_length") or config.get("search", {}).get("max_length") or 0)
        self._context = min(settings.ctx_size, trained) if trained else settings.ctx_size
        try:
            self.tokenizer = og.Tokenizer(str(folder))  # the tokenizer alone: the decoder is ours
        except Exception as exc:
            raise ModelLoadError(f"onnxruntime-genai cannot load the tokenizer of {folder}: {exc}") from exc
        self.template = folder_chat_template(folder)
        eos = model_cfg.get("eos_token_id", [])
        self._eos = {int(t) for t in (eos if isinstance(eos, list) else [eos])}
        try:
            decoder = Decoder(folder, config, slots=settings.parallel, context=self._context,
                              threads=settings.n_threads())
        except Exception as exc:
            raise ModelLoadError(f"onnxruntime cannot load the decoder of {folder}: {exc}") from exc
        self.scheduler = OnnxScheduler(decoder, self.tokenizer, slots=settings.parallel,
                                       max_queue=settings.max_queue, context_length=self._context,
                                       eos=self._eos, prefill_chunk=settings.prefill_chunk, name=name)
        self._info = ModelInfo(format="onnx", file=str(folder), architecture=str(model_cfg.get("type", "unknown")),
                               vocab_size=self._vocab, context_length=self._context, slots=settings.parallel,
                               extra={"engine": "onnxruntime", "batching": "continuous",
                                      "genai_version": getattr(og, "__version__", "unknown")})

    @property
    def context_length(self) -> int:
        return self._context

    @property
    def info(self) -> ModelInfo:
        return self._info

    def piece(self, token: int) -> str:
        return self.detokenize([token])

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return [int(t) for t in self.tokenizer.encode(text)]

    def detokenize(self, tokens: Sequence[int]) -> str:
        if not tokens:
            return ""
        import numpy as np

        return str(self.tokenizer.decode(np.asarray(list(tokens), dtype=np.int32)))

    def render_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
                    tools: list[dict[str, Any]] | None = None) -> str:
        return self.template.render(messages, add_generation_prompt=add_generation_prompt, tools=tools)

    def chat_tokens(self, rendered: str) -> list[int]:
        return self.tokenize(rendered)

    def generate(self, request: GenerationRequest) -> JobStream:
        """Queue the request (InvalidRequest for unsupported parameters, Overloaded when full)."""
        if request.sampling.ignore_eos:  # never sample an end-of-generation token
            bias = {**request.sampling.logit_bias, **dict.fromkeys(self._eos, float("-inf"))}
            request = replace(request, sampling=replace(request.sampling, logit_bias=bias, ignore_eos=False))
        check_supported(request, self._vocab)
        check_tokens(request.prompt, self._vocab)
        job = Job(request=request, loop=asyncio.get_running_loop())
        self.scheduler.submit(job)
        return JobStream(job, self.scheduler)

    def stats(self) -> dict[str, float]:
        return self.scheduler.stats()

    def slot_states(self) -> list[dict[str, int | bool]]:
        return self.scheduler.slot_states()

    def close(self) -> None:
        self.scheduler.close()
        self.tokenizer = None

