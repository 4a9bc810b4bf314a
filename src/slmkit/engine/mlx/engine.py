"""MlxEngine: the Engine protocol over an MLX model folder (`slm convert --to mlx` output), with
mlx-lm's model and Hugging Face tokenizer, and continuous batching (see ``scheduler``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from slmkit.engine.admission import Job, JobStream, check_tokens
from slmkit.engine.base import GenerationRequest, ModelInfo
from slmkit.engine.hf_files import folder_chat_template
from slmkit.engine.mlx.runtime import context_of, fit_to_device, mlx_lm, package_version, read_mlx_config
from slmkit.engine.mlx.sampling import check_supported
from slmkit.engine.mlx.scheduler import MlxScheduler
from slmkit.errors import ModelLoadError
from slmkit.settings import EngineSettings


class MlxEngine:
    """An MLX model (config.json, *.safetensors, tokenizer) served by mlx-lm."""

    def __init__(self, name: str, folder: Path, settings: EngineSettings) -> None:
        lm = mlx_lm()
        self.name = name
        self.path = folder
        config = read_mlx_config(folder)
        try:
            self.model, wrapper = lm.load(str(folder))
            device = fit_to_device(self.model)
        except Exception as exc:
            raise ModelLoadError(f"mlx-lm cannot load {folder}: {exc}") from exc
        self.tokenizer: Any = wrapper._tokenizer  # the Hugging Face tokenizer
        self._vocab = int(config.get("vocab_size") or len(self.tokenizer))
        trained = context_of(config)
        self._context = min(settings.ctx_size, trained) if trained else settings.ctx_size
        self.template = folder_chat_template(folder)
        self._eos = {int(t) for t in wrapper.eos_token_ids}
        self._bos = self.tokenizer.bos_token_id
        self.scheduler = MlxScheduler(self.model, self.detokenize, slots=settings.parallel,
                                      max_queue=settings.max_queue, context_length=self._context, eos=self._eos,
                                      name=name)
        quant = config.get("quantization") or {}
        self._info = ModelInfo(format="mlx", file=str(folder), architecture=str(config.get("model_type", "unknown")),
                               vocab_size=self._vocab, context_length=self._context, slots=settings.parallel,
                               size_bytes=sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()),
                               extra={"engine": "mlx-lm", "batching": "continuous", "device": device,
                                      "mlx_version": package_version("mlx"),
                                      "mlx_lm_version": package_version("mlx-lm"),
                                      "quantization": {"bits": quant.get("bits"),
                                                       "group_size": quant.get("group_size")}})

    @property
    def context_length(self) -> int:
        return self._context

    @property
    def info(self) -> ModelInfo:
        return self._info

    def piece(self, token: int) -> str:
        return self.detokenize([token])

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=add_special, split_special_tokens=not parse_special)
        return [int(t) for t in ids["input_ids"]]

    def detokenize(self, tokens: Sequence[int]) -> str:
        if not tokens:
            return ""
        return str(self.tokenizer.decode(list(tokens), skip_special_tokens=False,
                                         clean_up_tokenization_spaces=False))

    def render_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
                    tools: list[dict[str, Any]] | None = None) -> str:
        return self.template.render(messages, add_generation_prompt=add_generation_prompt, tools=tools)

    def chat_tokens(self, rendered: str) -> list[int]:
        tokens = self.tokenize(rendered)
        if self._bos is not None and tokens[:2] == [self._bos, self._bos]:  # the template wrote one already
            tokens = tokens[1:]
        return tokens

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

    @property
    def failure(self) -> str | None:
        """Why the scheduler thread died, if it did (the registry then loads the model again)."""
        return self.scheduler.failure

    def stats(self) -> dict[str, float]:
        return self.scheduler.stats()

    def slot_states(self) -> list[dict[str, int | bool]]:
        return self.scheduler.slot_states()

    def close(self) -> None:
        self.scheduler.close()
        self.model = None

