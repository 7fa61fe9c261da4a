"""The two runtimes a predictor can run a model on, behind one small interface.

Both take the export contract's graph inputs by name (``input_ids``/``valid`` and a text pair's ``segments``,
``pixels``, ``mels``/``valid``)
and give its outputs (``logits``, and ``output_valid`` for a token classifier) as torch tensors, so that
everything after them (scores, CTC decoding, sampling) is one code path:

- ``TorchBackend``: the model folder's own PyTorch model, in eval mode, under ``torch.inference_mode``.
- ``OnnxBackend``: onnxruntime sessions on an export folder's graphs, with as many intra-op threads as torch
  uses. Generation runs the ``decoder_step`` graph, feeding its ``present_*`` keys and values back as the
  next step's ``past_*``.

Generation goes through *steps* objects (``lm_steps``, ``seq2seq_steps``): ``steps(ids)`` runs the next
positions and returns their logits, remembering what was fed; ``reset()`` starts over (a sliding window).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from sora.errors import SoraError, first_line
from sora.models import TokenClassifier

MODEL_INPUTS = ("input_ids", "pixels", "mels")  # the one that carries the input, whichever the modality


class TorchBackend:
    name = "torch"

    def __init__(self, model: nn.Module):
        self.model = model.eval()

    def forward(self, feeds: dict[str, Tensor]) -> dict[str, Tensor]:
        """The ``model`` graph: logits (and token validity) of a classifier, span extractor or LM."""
        x = next(feeds[k] for k in MODEL_INPUTS if k in feeds)
        valid = feeds.get("valid")
        pair = (feeds["segments"],) if "segments" in feeds else ()  # (B, T) segment ids of text pairs
        with torch.inference_mode():
            out = {"logits": self.model(x, valid, *pair)}
            if isinstance(self.model, TokenClassifier):
                out["output_valid"] = self.model.output_valid(x, valid)
        return out

    def encode(self, feeds: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The ``encoder`` graph of a seq2seq model: (B, S, d) memory and its (B, S) validity."""
        with torch.inference_mode():
            memory, _ = self.model.encode(feeds["input_ids"], feeds["valid"])
        return memory, feeds["valid"]

    def lm_steps(self) -> TorchSteps:
        capacity = self.model.config.max_len  # the window never holds more: buffers allocated once per reset
        model = self.model
        with torch.inference_mode():
            step = model.decode_step()  # one token a step without module calls (sora.models.decode_step)
        return TorchSteps(
            lambda ids, cache: model.next_logits(ids, cache, step)[:, None], lambda: model.new_cache(capacity)
        )

    def seq2seq_steps(self, memory: Tensor, memory_valid: Tensor) -> TorchSteps:
        model = self.model
        return TorchSteps(
            lambda ids, cache: model.decode(ids, memory, memory_valid, cache),
            lambda: model.decoder.new_cache(model.config.max_len),
        )


class TorchSteps:
    """Incremental decoding with the model's own KV cache."""

    def __init__(self, run, new_cache):
        self.run, self.new_cache = run, new_cache
        self.reset()

    def reset(self) -> None:
        self.cache, self.fed = self.new_cache(), 0

    def __call__(self, ids: Tensor) -> Tensor:  # (B, T) -> logits (B, T or 1, V): the last are the next token's
        with torch.inference_mode():
            logits = self.run(ids, self.cache)
        self.fed += ids.shape[1]
        return logits


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, folder: Path, graphs: dict[str, dict], heads: list[int], head_dim: int):
        """``graphs``: the export meta's graphs; ``heads``: the decoder's heads per layer (its KV cache's shape)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: between calls the same cores tokenize, batch and serve.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.graphs, self.heads, self.head_dim = graphs, heads, head_dim
        self.sessions = {}
        for name, graph in graphs.items():
            try:
                self.sessions[name] = ort.InferenceSession(
                    str(folder / graph["file"]), options, providers=["CPUExecutionProvider"]
                )
            except Exception as e:  # noqa: BLE001  onnxruntime raises its own classes for bad files
                raise SoraError(f"{folder / graph['file']}: onnxruntime cannot load it ({first_line(e)})") from None
        self.outputs = {name: [o.name for o in s.get_outputs()] for name, s in self.sessions.items()}

    def run(self, graph: str, feeds: dict) -> dict[str, np.ndarray]:
        """Run ``graph`` on the feeds it takes (others are ignored); outputs by name."""
        if graph not in self.sessions:
            raise SoraError(f"the export has no '{graph}' graph (it has {', '.join(self.sessions)})")
        wanted = self.graphs[graph]["inputs"]
        missing = [name for name in wanted if name not in feeds]
        if missing:
            raise SoraError(f"the '{graph}' graph takes {', '.join(missing)}, which this model's inputs lack")
        arrays = {name: _numpy(feeds[name]) for name in wanted}
        try:
            values = self.sessions[graph].run(None, arrays)
        except Exception as e:  # noqa: BLE001  onnxruntime's errors are plain Exceptions (Fail, InvalidArgument...)
            raise SoraError(f"onnxruntime could not run the '{graph}' graph ({first_line(e)})") from None
        return dict(zip(self.outputs[graph], values))

    def forward(self, feeds: dict[str, Tensor]) -> dict[str, Tensor]:
        return {name: torch.from_numpy(value) for name, value in self.run("model", feeds).items()}

    def encode(self, feeds: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return torch.from_numpy(self.run("encoder", feeds)["memory"]), feeds["valid"]

    def lm_steps(self) -> OnnxSteps:
        return OnnxSteps(self, {})

    def seq2seq_steps(self, memory: Tensor, memory_valid: Tensor) -> OnnxSteps:
        return OnnxSteps(self, {"memory": _numpy(memory), "memory_valid": _numpy(memory_valid)})


class OnnxSteps:
    """Incremental decoding with the ``decoder_step`` graph: the KV cache lives in ``past_key_{i}`` and
    ``past_value_{i}`` arrays (B, H_i, S, dh), one pair per layer that has heads."""

    def __init__(self, backend: OnnxBackend, extra: dict[str, np.ndarray]):
        self.backend, self.extra = backend, extra
        inputs = backend.graphs["decoder_step"]["inputs"] if "decoder_step" in backend.graphs else []
        self.layers = [i for i in range(len(backend.heads)) if f"past_key_{i}" in inputs]
        self.reset()

    def reset(self) -> None:
        self.past, self.fed = None, 0

    def __call__(self, ids: Tensor) -> Tensor:  # (B, T) -> logits (B, T, V)
        if self.past is None:
            B, dh = ids.shape[0], self.backend.head_dim
            empty = {i: np.zeros((B, self.backend.heads[i], 0, dh), dtype=np.float32) for i in self.layers}
            self.past = {f"past_{kind}_{i}": empty[i] for i in self.layers for kind in ("key", "value")}
        out = self.backend.run("decoder_step", {"input_ids": ids, **self.extra, **self.past})
        self.past = {f"past_{kind}_{i}": out[f"present_{kind}_{i}"] for i in self.layers for kind in ("key", "value")}
        self.fed += ids.shape[1]
        return torch.from_numpy(out["logits"])


def _numpy(value) -> np.ndarray:
    """A feed as onnxruntime takes it: ids as int64, masks as bool, the rest float32."""
    array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
    if array.dtype.kind in "iu":
        return array.astype(np.int64, copy=False)
    if array.dtype == np.bool_:
        return array
    return array.astype(np.float32, copy=False)
