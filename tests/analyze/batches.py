"""Tiny models of every assembly with synthetic batches, and a model where one head carries the signal."""

import torch

from sora.models import build_model
from tests.helpers import tiny

# name -> (config overrides, task)
ASSEMBLIES = {
    "text_classifier": (dict(arch="encoder_classifier"), "classification"),
    "image_classifier": (
        dict(arch="encoder_classifier", input="image", image={"size": 8, "patch": 4}),
        "classification",
    ),
    "audio_classifier": (
        dict(arch="encoder_classifier", input="audio", audio={"n_mels": 8, "patch_frames": 2}),
        "classification",
    ),
    "tagger": (dict(arch="token_classifier"), "token_classification"),
    "ctc": (dict(arch="token_classifier", input="audio", audio={"n_mels": 8, "patch_frames": 2}, n_classes=6), "ctc"),
    "lm": (dict(arch="decoder_lm"), "lm"),
    "seq2seq": (dict(arch="seq2seq"), "seq2seq"),
}


def model_for(name: str):
    overrides, task = ASSEMBLIES[name]
    return build_model(tiny(**overrides)).eval(), task


def batch_for(name: str, B: int = 4, T: int = 9, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 50, (B, T), generator=g)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, T - 3 :] = False  # one padded row
    ids[~valid] = 0
    if name == "text_classifier":
        return {"inputs": ids, "valid": valid, "labels": torch.randint(0, 3, (B,), generator=g)}
    if name == "tagger":
        labels = torch.randint(0, 3, (B, T), generator=g).masked_fill(~valid, -100)
        return {"inputs": ids, "valid": valid, "labels": labels}
    if name == "image_classifier":
        return {"inputs": torch.randn(B, 1, 8, 8, generator=g), "labels": torch.randint(0, 3, (B,), generator=g)}
    if name in ("audio_classifier", "ctc"):
        frames = torch.ones(B, 12, dtype=torch.bool)
        frames[1, 8:] = False
        batch = {"inputs": torch.randn(B, 8, 12, generator=g), "valid": frames}
        if name == "ctc":
            batch["targets"] = torch.randint(1, 6, (B, 3), generator=g)
            batch["target_lengths"] = torch.tensor([3, 2, 3, 1][:B])
        else:
            batch["labels"] = torch.randint(0, 3, (B,), generator=g)
        return batch
    if name == "lm":
        labels = torch.roll(ids, -1, 1)
        labels[:, -1] = -100
        return {"inputs": ids, "labels": labels}
    if name == "seq2seq":
        tgt = torch.randint(3, 50, (B, T), generator=g)
        tgt[:, 0] = 1  # bos
        tgt_valid = torch.ones(B, T - 1, dtype=torch.bool)
        tgt_valid[2, -2:] = False
        tgt_out = tgt[:, 1:].masked_fill(~tgt_valid, -100)
        return {"src": ids, "src_valid": valid, "tgt_in": tgt[:, :-1], "tgt_out": tgt_out, "tgt_valid": tgt_valid}
    raise KeyError(name)


CARRIER = "layers.0.attn.head.2"


def one_head_model(n_batches: int = 4, B: int = 64, T: int = 8, seed: int = 0):
    """A 2-layer classifier where head 2 of layer 0 alone moves the deciding token to the CLS position.

    Tokens: CLS (id 1) then random ids. The label is a linear function of the token at position 3.
    Head layers.0.attn.head.2 is built by hand to attend from every query to position 3 and copy
    that token's embedding into the CLS residual; every other head keeps its random weights (and
    so mixes in a little of every token). Only the classifier is then trained, on the pooled CLS
    vector: the signal it learns to read comes through the carrier head.
    """
    torch.manual_seed(seed)
    config = tiny(arch="encoder_classifier", norm="rmsnorm", pooling="cls", n_classes=2, bias=True)
    model = build_model(config).eval()
    dh = config.head_dim
    with torch.no_grad():
        emb = model.embed.tokens.weight
        emb.zero_()
        emb[:, :16] = torch.randn(emb.shape[0], 16)
        pos = model.embed.position.weight
        pos.zero_()
        pos[3, 16] = 1.0  # the marker the carrier head looks for
        attn = model.layers[0].attn
        rows = slice(2 * dh, 3 * dh)
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight[rows] = 0
            proj.bias[rows] = 0
        attn.q_proj.bias[2 * dh] = 40.0  # every query asks for the marker ...
        attn.k_proj.weight[2 * dh, 16] = 1.0  # ... which only position 3 has
        attn.v_proj.weight[rows, :dh] = torch.eye(dh)  # value: the token's first dh embedding dims
        attn.out_proj.weight[:, rows] = 0
        attn.out_proj.weight[:dh, rows] = 3 * torch.eye(dh)
    direction = torch.randn(dh, generator=torch.Generator().manual_seed(seed + 1))
    g = torch.Generator().manual_seed(seed + 2)

    def make_batch() -> dict:
        ids = torch.randint(3, config.vocab_size, (B, T), generator=g)
        ids[:, 0] = 1
        labels = (model.embed.tokens.weight[ids[:, 3], :dh] @ direction > 0).long()
        return {"inputs": ids, "valid": torch.ones(B, T, dtype=torch.bool), "labels": labels}

    train = [make_batch() for _ in range(8)]
    pooled = []
    with torch.no_grad():
        for batch in train:
            h, valid = model.run_stack(batch["inputs"], batch["valid"])
            pooled.append(model.head.pool(h, valid))
    x, y = torch.cat(pooled), torch.cat([b["labels"] for b in train])
    head = model.head.classifier
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(head(x), y).backward()
        optimizer.step()
    return model, [make_batch() for _ in range(n_batches)]
