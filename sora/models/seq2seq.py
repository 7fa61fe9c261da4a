"""Encoder-decoder (seq2seq) model: translation and other sequence-to-sequence tasks.

The encoder reads the source bidirectionally; each decoder block attends causally to the target
so far, then across to the encoder output (cross-attention heads:
``decoder.layers.1.cross_attn.head.2``). Source and target share one vocabulary and, when
``tie_embeddings``, one embedding matrix that is also the output projection.
"""

import torch
from torch import Tensor, nn

from sora.models.beam import beam_search
from sora.models.config import ModelConfig
from sora.models.stack import Stack
from sora.particles import LayerCache, LMHead


class Seq2Seq(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Stack(config, config.encoder)
        self.decoder = Stack(config, config.decoder, causal=True, cross=True)
        self.head = LMHead(config.d_model, config.vocab_size)
        if config.tie_embeddings:
            self.decoder.embed.tokens.weight = self.encoder.embed.tokens.weight
            self.head.proj.weight = self.encoder.embed.tokens.weight

    def encode(self, src: Tensor, src_valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        memory, valid = self.encoder.run_stack(src, src_valid)  # (B, S, d), (B, S)
        return memory, valid

    def decode(
        self,
        tgt: Tensor,  # (B, T) target ids so far, starting with bos
        memory: Tensor,  # (B, S, d)
        memory_valid: Tensor | None,
        cache: list[LayerCache] | None = None,
        tgt_valid: Tensor | None = None,
    ) -> Tensor:  # logits (B, T, V)
        h, _ = self.decoder.run_stack(tgt, tgt_valid, memory=memory, memory_valid=memory_valid, cache=cache)
        return self.head(h)

    def forward(
        self, src: Tensor, tgt: Tensor, src_valid: Tensor | None = None, tgt_valid: Tensor | None = None
    ) -> Tensor:
        memory, memory_valid = self.encode(src, src_valid)
        return self.decode(tgt, memory, memory_valid, tgt_valid=tgt_valid)

    @torch.inference_mode()
    def generate(
        self,
        src: Tensor,  # (B, S)
        max_new_tokens: int = 64,
        *,
        beam: int = 1,
        src_valid: Tensor | None = None,
        length_penalty: float = 1.0,
        use_cache: bool = True,
    ) -> list[list[int]]:  # one token list per source, without bos and eos
        bos, eos = self.config.bos_id, self.config.eos_id
        if bos is None or eos is None:
            raise ValueError("generation needs bos_id and eos_id in the model config")
        was_training = self.training
        self.eval()
        try:
            memory, memory_valid = self.encode(src, src_valid)
            if beam > 1:
                return beam_search(
                    self,
                    memory,
                    memory_valid,
                    beam=beam,
                    max_new_tokens=max_new_tokens,
                    bos_id=bos,
                    eos_id=eos,
                    length_penalty=length_penalty,
                    use_cache=use_cache,
                )
            return self._greedy(memory, memory_valid, max_new_tokens, bos, eos, use_cache)
        finally:
            self.train(was_training)

    def _greedy(self, memory, memory_valid, max_new_tokens, bos, eos, use_cache) -> list[list[int]]:
        """One token a step into a cache preallocated for them all (the source's keys and values once)."""
        B = memory.shape[0]
        tokens = torch.full((B, 1 + max_new_tokens), bos, dtype=torch.long, device=memory.device)  # (B, 1 + new)
        cache = self.decoder.new_cache(1 + max_new_tokens) if use_cache else None
        done = torch.zeros(B, dtype=torch.bool, device=memory.device)
        length = 1
        for _ in range(max_new_tokens):
            step = tokens[:, length - 1 : length] if cache is not None else tokens[:, :length]
            token = self.decode(step, memory, memory_valid, cache)[:, -1].argmax(-1)  # (B,)
            token = token.masked_fill(done, eos)
            done |= token == eos
            tokens[:, length] = token
            length += 1
            if done.all():
                break
        return [_strip(row.tolist(), eos) for row in tokens[:, 1:length]]


def _strip(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids
