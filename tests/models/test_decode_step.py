"""The one-token decoding step as plain tensor ops (sora.models.decode_step) is the particles' arithmetic: the same
logits within float error and the same tokens, for every block shape a decoder LM can have, and it steps aside
wherever only the particles are exact (a hook listening, int8 projections, adaptive span)."""

import pytest
import torch

from sora.compress.config import QuantizeConfig
from sora.compress.quantize import quantize_model
from sora.models.beam import lm_beam_search
from tests.helpers import sharp_lm

SHAPES = {
    "pre_layernorm_gelu": {},
    "post_norm_relu": {"norm_position": "post", "activation": "relu"},
    "rmsnorm_swiglu_rotary_no_bias": {"norm": "rmsnorm", "activation": "swiglu", "position": "rotary", "bias": False},
    "pruned_layers": {"decoder": {"n_layers": 3, "n_heads": [4, 0, 2], "d_ff": [64, 16, 0]}},
    "sinusoidal_embed_norm": {"position": "sinusoidal", "embed_norm": True, "tie_embeddings": True},
}


def particle_logits(model, prompt: torch.Tensor, steps: int, step=None) -> torch.Tensor:
    """(steps, B, V): the logits of feeding the prompt, then each greedy token, one at a time."""
    cache, fed, out = model.new_cache(prompt.shape[1] + steps), prompt, []
    for _ in range(steps):
        logits = model.next_logits(fed, cache, step)
        out.append(logits)
        fed = logits.argmax(-1, keepdim=True)
    return torch.stack(out)


@pytest.mark.parametrize("shape", SHAPES)
def test_the_step_equals_the_particles(shape):
    model = sharp_lm(**SHAPES[shape])
    prompt = torch.randint(3, 50, (3, 5), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        step = model.decode_step()
        assert step is not None
        fast, slow = particle_logits(model, prompt, 12, step), particle_logits(model, prompt, 12)
        assert torch.allclose(fast, slow, atol=1e-5, rtol=1e-5)
        assert torch.equal(model.generate(prompt, 30), model.generate(prompt, 30, use_cache=False))


def test_gates_switched_off_are_folded_into_the_step():
    model = sharp_lm()
    with torch.no_grad():
        model.layers[0].attn.head_gate[1] = 0
        model.layers[1].ffn.neuron_mask[::3] = 0
    prompt = torch.randint(3, 50, (2, 4), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        fast = particle_logits(model, prompt, 8, model.decode_step())
        slow = particle_logits(model, prompt, 8)
    assert torch.allclose(fast, slow, atol=1e-5, rtol=1e-5)


def test_sliding_window_and_beam_search_give_what_the_particles_give():
    model = sharp_lm(max_len=16)
    prompts = torch.randint(3, 50, (2, 6), generator=torch.Generator().manual_seed(2))
    fast = model.generate(prompts, 30)  # the window slides twice: the cache restarts through the particles
    beams = lm_beam_search(model, prompts, beam=3, max_new_tokens=20)
    model.decode_step = lambda: None  # the particles alone
    assert torch.equal(fast, model.generate(prompts, 30))
    assert beams == lm_beam_search(model, prompts, beam=3, max_new_tokens=20)


def test_a_listening_hook_sends_generation_through_the_particles():
    model = sharp_lm()
    seen = []
    handle = model.layers[1].ffn.hook_post.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    prompt = torch.randint(3, 50, (1, 4), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        assert model.decode_step() is None
    model.generate(prompt, 5)
    assert len(seen) == 5  # the prompt's pass and four single-token steps, each seen by the hook
    handle.remove()
    with torch.inference_mode():
        assert model.decode_step() is not None


def test_int8_projections_and_training_mode_take_the_particles_path():
    model = sharp_lm()
    with torch.inference_mode():
        int8 = quantize_model(sharp_lm(), QuantizeConfig(min_weights=0, min_side=0))
        assert int8.decode_step() is None
        model.train()
        assert model.decode_step() is None
