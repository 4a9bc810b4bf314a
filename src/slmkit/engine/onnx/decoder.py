"""The decoder graph of an onnxruntime-genai model folder, run by onnxruntime directly over one
KV buffer with a row per slot, so that sequences join and leave a running batch at any step.

onnxruntime-genai's generators read their prompts once (a static batch) and its continuous
batching needs paged attention, which is CUDA-only. The graph its builder writes for the CPU
takes, besides the new tokens, an attention mask whose row sums give each sequence's length and
the past keys and values of every layer (``GroupQueryAttention``): a sequence's cache holds its
tokens from position 0, whatever the other rows hold, and its new keys are written at its own
length. Bound as both the past input and the present output (one buffer, ``past_present_share_
buffer``), the cache is updated in place. So:

- ``kv[layer]`` holds ``slots`` rows of ``context`` positions; the sequences of the running
  batch are rows ``0 .. n-1``, one decode step runs on that contiguous prefix, and prompts
  being read take the rows after it (each read in chunks, a batch of one, between steps);
- a prompt read in full is in row ``n`` already: it joins the running batch at the next step;
- a sequence that ends is replaced by the last running row (one row's cache copied), and the
  rows of prompts being read move down one, so the rows in use stay a prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


class Decoder:
    """One model's decoder session and its KV buffers (``slots`` rows, ``context`` positions)."""

    def __init__(self, folder: Path, config: dict[str, Any], *, slots: int, context: int, threads: int) -> None:
        import onnxruntime as ort

        self.ort = ort
        dec = config["model"]["decoder"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        for key, value in (dec.get("session_options") or {}).get("config_entries", {}).items():
            options.add_session_config_entry(str(key), str(value))
        self.session = ort.InferenceSession(str(folder / dec.get("filename", "model.onnx")), sess_options=options,
                                            providers=["CPUExecutionProvider"])
        types = {i.name: i.type for i in self.session.get_inputs()}
        names, outs = dec.get("inputs", {}), dec.get("outputs", {})
        self.ids_name = names.get("input_ids", "input_ids")
        self.mask_name = names.get("attention_mask", "attention_mask")
        position = names.get("position_ids", "position_ids")
        self.pos_name = position if position in types else None
        self.logits_name = outs.get("logits", "logits")
        layers = int(dec["num_hidden_layers"])
        self.past = [(names.get("past_key_names", "past_key_values.%d.key") % i,
                      names.get("past_value_names", "past_key_values.%d.value") % i) for i in range(layers)]
        self.present = [(outs.get("present_key_names", "present.%d.key") % i,
                         outs.get("present_value_names", "present.%d.value") % i) for i in range(layers)]
        self.int_type = {name: _INT_TYPES.get(types.get(name, ""), np.int64)
                         for name in (self.ids_name, self.mask_name, self.pos_name) if name}
        kv_type = np.float16 if types.get(self.past[0][0]) == "tensor(float16)" else np.float32
        shape = (slots, int(dec["num_key_value_heads"]), context, int(dec["head_size"]))
        self.kv = [(np.zeros(shape, kv_type), np.zeros(shape, kv_type)) for _ in range(layers)]
        self.context = context
        self._views: dict[tuple[int, int], list[tuple[Any, Any]]] = {}

    def decode(self, tokens: list[int], lengths: list[int]) -> np.ndarray:
        """One step for rows ``0 .. len(tokens)-1``: row i holds ``lengths[i]`` tokens and reads
        ``tokens[i]``. The logits of each row, shape ``(rows, vocab)``."""
        rows = len(tokens)
        width = max(lengths) + 1
        mask = np.zeros((rows, width), self.int_type[self.mask_name])
        for i, n in enumerate(lengths):
            mask[i, :n + 1] = 1
        ids = np.asarray(tokens, self.int_type[self.ids_name]).reshape(rows, 1)
        positions = np.asarray(lengths).reshape(rows, 1)
        return self._run(ids, mask, positions, self._rows(0, rows))[:, -1, :]

    def prefill(self, row: int, tokens: list[int], start: int) -> np.ndarray:
        """Read ``tokens`` into ``row`` after its first ``start`` tokens; the logits of the last one."""
        ids = np.asarray(tokens, self.int_type[self.ids_name]).reshape(1, -1)
        mask = np.ones((1, start + len(tokens)), self.int_type[self.mask_name])
        positions = np.arange(start, start + len(tokens)).reshape(1, -1)
        return self._run(ids, mask, positions, self._rows(row, row + 1))[0, -1, :]

    def _rows(self, first: int, end: int) -> list[tuple[Any, Any]]:
        """OrtValues over rows ``first .. end-1`` of every buffer (views: no copy), kept."""
        if (first, end) not in self._views:
            self._views[first, end] = self._wrap([(k[first:end], v[first:end]) for k, v in self.kv])
        return self._views[first, end]

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy row ``src``'s first ``length`` positions into row ``dst``."""
        for k, v in self.kv:
            k[dst, :, :length] = k[src, :, :length]
            v[dst, :, :length] = v[src, :, :length]

    def _wrap(self, arrays: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[Any, Any]]:
        value = self.ort.OrtValue.ortvalue_from_numpy  # on the CPU: the array's own memory
        return [(value(k), value(v)) for k, v in arrays]

    def _run(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray,
             caches: list[tuple[Any, Any]]) -> np.ndarray:
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.ids_name, ids)
        binding.bind_cpu_input(self.mask_name, mask)
        if self.pos_name:
            binding.bind_cpu_input(self.pos_name, positions.astype(self.int_type[self.pos_name]))
        binding.bind_output(self.logits_name, "cpu")
        for (past_k, past_v), (out_k, out_v), (k, v) in zip(self.past, self.present, caches, strict=True):
            for past, out, value in ((past_k, out_k, k), (past_v, out_v, v)):
                binding.bind_ortvalue_input(past, value)  # past and present: one buffer, updated in place
                binding.bind_ortvalue_output(out, value)
        self.session.run_with_iobinding(binding)
        logits: np.ndarray = binding.get_outputs()[0].numpy()
        return logits.astype(np.float32, copy=False)

    def close(self) -> None:
        self._views = {}
        self.kv = []
        self.session = None
