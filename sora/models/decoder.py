"""Decoder-only language model (GPT-style) with sampling and a KV cache."""

import torch
from torch import Tensor

from sora.models.config import ModelConfig
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

    @torch.no_grad()
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
        eos_id = self.config.eos_id if eos_id is None else eos_id
        cache = self.new_cache() if use_cache else None
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        step_input = ids
        for _ in range(max_new_tokens):
            if cache is None:
                step_input = ids[:, -self.config.max_len :]
            elif cache[0].self_attn.length + step_input.shape[1] > self.config.max_len:
                cache, step_input = self.new_cache(), ids[:, -self.config.max_len + 1 :]  # slide the window
            logits = self(step_input, cache=cache)[:, -1]  # (B, V)
            token = next_token(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
            if eos_id is not None:
                token = token.masked_fill(done, eos_id)
                done |= token == eos_id
            ids = torch.cat([ids, token[:, None]], dim=1)
            step_input = token[:, None]
            if eos_id is not None and done.all():
                break
        self.train(was_training)
        return ids
