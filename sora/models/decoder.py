"""Decoder-only language model (GPT-style) with sampling and a KV cache."""

import torch
from torch import Tensor

from sora.models.config import ModelConfig
from sora.models.decode_step import DecodeStep
from sora.models.sampling import next_token
from sora.models.stack import Stack
from sora.particles import LMHead


class DecoderLM(Stack):
    def __init__(self, config: ModelConfig):
        super().__init__(config, config.decoder, causal=True)
        self.head = LMHead(config.d_model, config.vocab_size)
        if config.tie_embeddings:
            self.head.proj.weight = self.embed.tokens.weight

    def forward(self, ids: Tensor, valid: Tensor | None = None, cache=None) -> Tensor:  # (B, T) -> (B, T, V)
        h, _ = self.run_stack(ids, valid, cache=cache)
        return self.head(h)

    def next_logits(self, ids: Tensor, cache=None, step: DecodeStep | None = None) -> Tensor:  # (B, T) -> (B, V)
        """Logits for the last position only. ``step`` (``decode_step()``): one new token per row with a cache runs
        as plain tensor ops, without the particles' module calls (the same arithmetic)."""
        if step is not None and cache is not None and ids.shape[1] == 1:
            return step(ids[:, 0], cache)
        h, _ = self.run_stack(ids, cache=cache)
        return self.head(h[:, -1])  # a prompt's other positions need no (d x V) projection

    def decode_step(self) -> DecodeStep | None:
        """The one-token step as plain tensor ops for the weights as they are now (None: nothing to gain exactly,
        e.g. a hook listens or a projection is int8); build one per generation."""
        return DecodeStep.of(self)

    @torch.inference_mode()
    def generate(
        self,
        ids: Tensor,  # (B, T) prompts of equal length
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_id: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:  # (B, T + new) stops early once every row has produced eos_id
        was_training = self.training
        self.eval()
        try:
            sample = dict(temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
            eos_id = self.config.eos_id if eos_id is None else eos_id
            return self._generate(ids, max_new_tokens, sample, eos_id, use_cache)
        finally:
            self.train(was_training)

    def _generate(self, ids: Tensor, max_new_tokens: int, sample: dict, eos_id: int | None, use_cache: bool) -> Tensor:
        """The prompt in one pass, then one token a step into a cache preallocated for them all; the output ids
        are written into one tensor, not concatenated each step. Past ``max_len`` the window slides: the cache
        restarts on the last ``max_len - 1`` tokens."""
        B, T0 = ids.shape
        max_len = self.config.max_len
        out = ids.new_empty(B, T0 + max_new_tokens)  # (B, T0 + new)
        out[:, :T0] = ids
        length, step_input = T0, ids
        cache = self.new_cache(min(max_len, T0 + max_new_tokens)) if use_cache else None
        done = torch.zeros(B, dtype=torch.bool, device=ids.device) if eos_id is not None else None
        step = self.decode_step() if use_cache else None
        for _ in range(max_new_tokens):
            if cache is None:
                step_input = out[:, max(0, length - max_len) : length]
            elif cache[0].self_attn.length + step_input.shape[1] > max_len:
                cache, step_input = self.new_cache(max_len), out[:, length - max_len + 1 : length]  # slide
            token = next_token(self.next_logits(step_input, cache, step), **sample)  # (B,)
            if done is not None:
                token = token.masked_fill(done, eos_id)
                done |= token == eos_id
            out[:, length] = token
            length += 1
            step_input = out[:, length - 1 : length]  # (B, 1)
            if done is not None and done.all():
                break
        return out[:, :length]
