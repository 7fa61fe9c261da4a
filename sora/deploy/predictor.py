"""The Predictor: raw inputs in, predictions out, from a model folder or an ONNX export folder.

    from sora.deploy import Predictor
    p = Predictor.load("runs/sentiment/model")            # backend="auto" | "torch" | "onnxruntime"
    p.predict(["a fine film", "dull"])                    # [{"label": "pos", "score": 0.93, "scores": {...}}, ...]
    "".join(p.generate("Once upon", max_new_tokens=50))   # an LM's continuation, streamed in pieces
    p.attention("a fine film")                            # every head's pattern, named layers.{i}.attn.head.{h}

    qa = Predictor.load("runs/qa/model")                  # a span_extractor: extractive question answering
    qa.predict([{"question": "Who wrote it?", "context": "It was written by Ada in 1843."}])
    # [{"answer": "Ada", "start": 18, "end": 21, "score": 7.2}]     (characters of the context; start + end logit)

Inputs are read as training read them (``InputReader``: the folder's tokenizer, its recorded image or audio
preprocessing), sorted by length into batches so that little padding is computed, run on the chosen
backend (``TorchBackend`` or ``OnnxBackend``; "auto" measures both at load and keeps the faster), and
returned in input order. A question's context is read in the windows training used, all of them in one batch
(``batch_size`` then counts windows). A bad item is one line: raised (``errors="raise"``) or returned in its place as
``{"error": ...}`` (``errors="return"``) while the rest still run.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from sora.deploy import outputs
from sora.deploy.backends import OnnxBackend, TorchBackend
from sora.deploy.batching import call_cost_positions, length_batches, window_batches
from sora.deploy.decoding import continuation, generated, next_tokens, text_pieces
from sora.deploy.export import is_export_dir, read_export
from sora.deploy.inputs import InputReader, Item
from sora.deploy.patterns import attention_patterns, patch_names
from sora.deploy.preprocessing import input_preprocessing
from sora.deploy.timing import choose, median_ms, probe_feeds
from sora.errors import SoraError, first_line
from sora.models import ModelConfig, load_config, load_meta, load_model, load_tokenizer
from sora.models.beam import lm_beam_search
from sora.models.folder import require_model_dir
from sora.tasks import normalise_task

BACKENDS = ("auto", "torch", "onnxruntime")
DEFAULT_NEW_TOKENS = 50  # an LM's continuation in predict()
FEWEST_CALLS = 1e9  # a call cost (in positions) so large that batches are cut only by their size
ARCH_TASKS = {
    "encoder_classifier": "classification",
    "decoder_lm": "lm",
    "seq2seq": "seq2seq",
    "span_extractor": "span",
}


class Predictor:
    def __init__(self, folder: Path, config: ModelConfig, meta: dict, tokenizer, export: dict | None):
        self.folder, self.config, self.meta, self.tokenizer, self.export = folder, config, meta, tokenizer, export
        self.task = task_of(config, meta, folder)
        self.input = config.input
        self.labels = _labels(meta, config, self.task, folder)
        self.reader = InputReader(config, self.task, tokenizer, input_preprocessing(folder, config, meta))
        self.backend: str = "torch"
        self.load_timings: dict[str, float] = {}  # backend -> median ms on a probe batch (backend="auto")
        self._model: nn.Module | None = None
        self._runner: TorchBackend | OnnxBackend | None = None
        self._model_lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto") -> Predictor:
        """Read a model folder (torch) or an export folder (torch or onnxruntime); ``backend`` "auto"
        runs both on a small batch and keeps the faster (``load_timings`` says what was measured)."""
        folder = Path(path)
        if backend not in BACKENDS:
            raise SoraError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        export = read_export(folder) if is_export_dir(folder) else None
        require_model_dir(folder)
        config, meta = load_config(folder), load_meta(folder)
        tokenizer = load_tokenizer(folder) if config.input == "text" else None
        if config.input == "text" and tokenizer is None:
            raise SoraError(f"{folder}: no tokenizer.json; a text model needs the tokenizer it was trained with")
        predictor = cls(folder, config, meta, tokenizer, export)
        predictor._start(backend)
        return predictor

    @property
    def model(self) -> nn.Module:
        """The PyTorch model (loaded when first needed on an onnxruntime predictor: attention, beam search)."""
        with self._model_lock:
            if self._model is None:
                self._model = load_model(self.folder).eval()
            return self._model

    def _start(self, backend: str) -> None:
        if backend == "onnxruntime" and self.export is None:
            raise SoraError(
                f"{self.folder}: a model folder without ONNX graphs; export it (sora export {self.folder} "
                "--format onnx --out DIR) or use the torch backend"
            )
        if backend == "torch" or self.export is None:
            self._use(TorchBackend(self.model))
            return
        heads = self.config.decoder.heads() if self.config.decoder is not None else []
        onnx = OnnxBackend(self.folder, self.export["graphs"], heads, self.config.head_dim)
        if backend == "onnxruntime" or self.export["precision"] == "int8":  # torch holds only the fp32 weights:
            self._use(onnx)  # "auto" compares like with like, so an int8 export runs its int8 graphs
            return
        candidates = (TorchBackend(self.model), onnx)
        chosen, self.load_timings = choose({b.name: partial(self._probe, b) for b in candidates})
        self._use(next(b for b in candidates if b.name == chosen))

    def _use(self, runner: TorchBackend | OnnxBackend) -> None:
        self._runner, self.backend = runner, runner.name
        self.call_cost = self._call_cost()

    def _call_cost(self) -> float:
        """A model call's fixed cost in padded positions, which ``length_batches`` weighs against padding:
        measured for text encoders; elsewhere as few calls as possible (decoding costs per call, and images
        have one length; questions are batched by their windows)."""
        if self.input != "text" or self.task in ("lm", "seq2seq", "span"):
            return FEWEST_CALLS

        def seconds(batch: int, tokens: int) -> float:
            feeds = probe_feeds(self.config, self.reader.prep, batch, tokens)
            return median_ms(lambda: self._runner.forward(feeds)) / 1000

        return call_cost_positions(seconds, length=min(32, self.config.max_len))

    def _probe(self, runner: TorchBackend | OnnxBackend) -> None:
        """The model's kind of work on a small synthetic batch: a forward pass, or a few generated tokens."""
        feeds, max_len = probe_feeds(self.config, self.reader.prep), self.config.max_len
        if self.task == "lm":
            list(next_tokens(runner.lm_steps(), feeds["input_ids"][:4, :8], 4, max_len=max_len, eos_id=None))
        elif self.task == "seq2seq":
            memory, valid = runner.encode(feeds)
            start = torch.full((memory.shape[0], 1), self.config.bos_id, dtype=torch.long)
            list(next_tokens(runner.seq2seq_steps(memory, valid), start, 4, max_len=max_len, eos_id=None))
        else:
            runner.forward(feeds)

    # -- predict

    def predict(
        self,
        inputs: Iterable[Any],
        batch_size: int = 32,
        *,
        errors: str = "raise",
        max_new_tokens: int | None = None,
        beam: int = 1,
    ) -> list[dict]:
        """One result per input, in input order (see the module docstring for each task's keys).

        ``max_new_tokens``: an LM's continuation length (default 50) or a translation's limit (default the
        model's ``max_len - 1``); ``beam`` > 1: beam search on the torch model instead of greedy decoding."""
        inputs = self._check_call(inputs, batch_size, errors, beam, max_new_tokens)
        results: list[dict | None] = [None] * len(inputs)
        items: dict[int, Item] = {}
        for i, read in enumerate(self.reader.read_all(inputs)):
            if isinstance(read, Item):
                items[i] = read
            elif errors == "raise":
                raise SoraError(f"input {i}: {read}")
            else:
                results[i] = {"error": str(read)}
        for batch in self._batches(items, batch_size):
            chunk = [items[i] for i in batch]
            for i, result in zip(batch, self._run_safely(chunk, errors, max_new_tokens, beam)):
                results[i] = result
        return results

    def _check_call(self, inputs, batch_size: int, errors: str, beam: int, max_new_tokens: int | None) -> list:
        if isinstance(inputs, (str, bytes, Path, dict)):
            raise SoraError("predict takes a list of inputs; put a single one in a list")
        if errors not in ("raise", "return"):
            raise SoraError(f"errors={errors!r}: expected 'raise' or 'return'")
        if batch_size < 1 or beam < 1 or (max_new_tokens is not None and max_new_tokens < 1):
            raise SoraError(f"batch_size {batch_size}, beam {beam} and max_new_tokens {max_new_tokens} must be >= 1")
        if beam > 1 and self.task not in ("lm", "seq2seq"):
            raise SoraError(f"beam search needs a decoder_lm or seq2seq model; this one does {self.task}")
        return list(inputs)

    def _batches(self, items: dict[int, Item], batch_size: int) -> Iterator[list[int]]:
        """Indices sorted by length, cut into the batches that cost least (``sora.deploy.batching``); an LM's
        batches hold prompts of one length only (generation takes no padding); a question's windows stay together."""
        if self.task == "span":
            keys = list(items)
            windows = [len(items[i].features.windows) for i in keys]
            for batch in window_batches(windows, [items[i].length for i in keys], batch_size):
                yield [keys[k] for k in batch]
            return
        if self.task != "lm":
            keys = list(items)
            for batch in length_batches([items[i].length for i in keys], batch_size, self.call_cost):
                yield [keys[k] for k in batch]
            return
        batch: list[int] = []
        for i in sorted(items, key=lambda i: items[i].length):
            new_length = self.task == "lm" and batch and items[i].length != items[batch[0]].length
            if batch and (len(batch) == batch_size or new_length):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _run_safely(self, items: list[Item], errors: str, max_new_tokens: int | None, beam: int) -> list[dict]:
        """A batch's results; with errors="return", a batch that fails is run item by item so that only
        the failing items report an error."""
        try:
            return self._run(items, max_new_tokens, beam)
        except (SoraError, RuntimeError, ValueError, IndexError) as e:
            if errors == "raise":
                raise
            if len(items) == 1:
                return [{"error": first_line(e)}]
            return [r for item in items for r in self._run_safely([item], errors, max_new_tokens, beam)]

    def _run(self, items: list[Item], max_new_tokens: int | None, beam: int) -> list[dict]:
        if self.task == "lm":
            return self._continue(items, max_new_tokens or DEFAULT_NEW_TOKENS, beam)
        if self.task == "seq2seq":
            return self._translate(items, max_new_tokens, beam)
        feeds = self.reader.batch(items)
        out = self._runner.forward(feeds)
        if self.task == "span":
            return outputs.answered(out["logits"], feeds, [item.features.context for item in items])
        if self.task == "classification":
            return outputs.classified(out["logits"], self.labels)
        if self.task == "token_classification":
            return outputs.tagged(out["logits"], out.get("output_valid"), [it.tokens for it in items], self.labels)
        return outputs.transcribed(out["logits"], out.get("output_valid"), self.labels)

    def _continue(self, items: list[Item], max_new_tokens: int, beam: int) -> list[dict]:
        """Greedy (or beam) continuations of prompts of one length."""
        ids = torch.tensor([item.features for item in items])  # (B, T)
        eos = self.config.eos_id
        if beam > 1:
            with torch.inference_mode():
                rows = lm_beam_search(self.model, ids, beam=beam, max_new_tokens=max_new_tokens)
        else:
            steps = self._runner.lm_steps()
            tokens = next_tokens(steps, ids, max_new_tokens, max_len=self.config.max_len, eos_id=eos)
            rows = generated(tokens, len(items), eos)
        return [{"text": continuation(self.tokenizer, item.features, row)} for item, row in zip(items, rows)]

    def _translate(self, items: list[Item], max_new_tokens: int | None, beam: int) -> list[dict]:
        """Greedy (or beam) translations of a padded batch of sources."""
        feeds = self.reader.batch(items)
        room = min(max_new_tokens or self.config.max_len, self.config.max_len - 1)  # the decoder's positions
        if beam > 1:
            rows = self.model.generate(feeds["input_ids"], room, beam=beam, src_valid=feeds["valid"])
        else:
            rows = generated(self._translation_tokens(feeds, room), len(items), self.config.eos_id)
        return [{"translation": self.tokenizer.decode(row, skip_special_tokens=True)} for row in rows]

    def _translation_tokens(self, feeds: dict, room: int, **sampling) -> Iterator[torch.Tensor]:
        memory, memory_valid = self._runner.encode(feeds)
        start = torch.full((memory.shape[0], 1), self.config.bos_id, dtype=torch.long)  # (B, 1)
        steps = self._runner.seq2seq_steps(memory, memory_valid)
        return next_tokens(steps, start, room, max_len=self.config.max_len, eos_id=self.config.eos_id, **sampling)

    # -- generate, attention

    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 50,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> Iterator[str]:
        """Text pieces as they are produced: an LM's continuation of ``prompt`` (an empty prompt starts
        from the begin token), or a seq2seq model's translation of it."""
        if self.task not in ("lm", "seq2seq"):
            raise SoraError(f"generate needs a decoder_lm or seq2seq model; this one does {self.task} (use predict)")
        if max_new_tokens < 1 or temperature < 0 or (top_k is not None and top_k < 1):
            raise SoraError(f"max_new_tokens {max_new_tokens} and top_k {top_k} must be >= 1, temperature >= 0")
        if top_p is not None and not 0 < top_p <= 1:
            raise SoraError(f"top_p {top_p}: expected a probability in (0, 1]")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        eos = self.config.eos_id
        if self.task == "seq2seq":
            feeds = self.reader.batch([self.reader.read_text(prompt)])
            room = min(max_new_tokens, self.config.max_len - 1)
            return text_pieces(self.tokenizer, [], _until(self._translation_tokens(feeds, room, **sampling), eos))
        ids = self._prompt(prompt)
        steps, max_len = self._runner.lm_steps(), self.config.max_len
        tokens = next_tokens(steps, torch.tensor([ids]), max_new_tokens, max_len=max_len, eos_id=eos, **sampling)
        return text_pieces(self.tokenizer, ids, _until(tokens, eos))

    def _prompt(self, prompt: str) -> list[int]:
        if isinstance(prompt, str) and not prompt.strip():
            if self.config.bos_id is None:
                raise SoraError("the prompt is empty, and the model has no bos_id to start from")
            return [self.config.bos_id]
        return self.reader.read_text(prompt).features

    def attention(self, item: Any) -> dict:
        """The torch model's attention on one input: its tokens (as the tokenizer shows them, or patches)
        and every head's (T x T) pattern, layer by layer; layers pruned to no heads are left out. A question-answering
        model takes a text, or a question and its context (its first window: the question beside the context)."""
        read = self._attention_item(item)
        feeds = self.reader.batch([read])
        if self.task == "lm":
            feeds = {"input_ids": feeds["input_ids"]}
        layers = attention_patterns(self.model, feeds)
        n = len(layers[0]["heads"][0]["pattern"]) if layers else 0
        tokens = read.tokens if self.input == "text" else patch_names(self.model, n)
        return {"tokens": tokens, "layers": layers}

    def _attention_item(self, item: Any) -> Item:
        if self.task == "span" and not isinstance(item, str):
            question = self.reader.read(item).features
            first = question.windows[0]
            tokens = [self.tokenizer.id_to_token(int(i)) for i in first.ids]
            return Item(replace(question, windows=[first]), len(first.ids), tokens)
        read = self.reader.read_text(item) if self.task == "span" else self.reader.read(item)
        if self.input == "text":
            read = Item(read.features[: self.config.max_len], 0, read.tokens[: self.config.max_len])
        return read


def _until(tokens: Iterator[torch.Tensor], eos_id: int | None) -> Iterator[int]:
    """The one row's ids, up to its end-of-sequence token."""
    for step in tokens:
        token = int(step[0])
        if token == eos_id:
            return
        yield token


def task_of(config: ModelConfig, meta: dict, folder: Path) -> str:
    """What the model does: its arch decides, and a token classifier's task (tagging or CTC) comes from
    meta.json, else from its input (text: tagging; audio: CTC)."""
    if config.arch == "encoder":
        raise SoraError(f"{folder}: a feature extractor (arch 'encoder') has no task head to predict with")
    if config.arch in ARCH_TASKS:
        return ARCH_TASKS[config.arch]
    named = meta.get("task")
    task = normalise_task(named) if isinstance(named, str) else None
    if task in ("token_classification", "ctc"):
        return task
    return "token_classification" if config.input == "text" else "ctc"


def _labels(meta: dict, config: ModelConfig, task: str, folder: Path) -> list[str] | None:
    labels = meta.get("labels")
    if labels is None or task not in ("classification", "token_classification", "ctc"):
        return None
    if config.n_classes is not None and len(labels) != config.n_classes:
        raise SoraError(
            f"{folder}/meta.json: labels lists {len(labels)} names but the model has {config.n_classes} classes"
        )
    return [str(label) for label in labels]
