"""Patch embeddings: images and spectrograms become sequences of tokens.

Images are cut into P x P patches (a strided convolution, as in ViT); log-mel spectrograms are
cut along time into groups of frames, each group covering every mel band. Both can prepend a
learned CLS vector, which a classifier head can pool from.
"""

import torch
from torch import Tensor, nn

from sora.particles.hookpoint import HookPoint


class ImagePatchEmbedding(nn.Module):
    """``stem="patch"``: each P x P patch projected on its own (ViT). ``stem="conv"``: log2(P) overlapping 3x3
    convolutions of stride 2, so that a token also sees the pixels around its patch (Xiao et al. 2021, "Early
    convolutions help transformers see better"): the same tokens, and a ViT trained from scratch on a small
    set learns faster. Either way the tokens are the (size / P)^2 patches, row by row."""

    kind = "patch_embedding"

    def __init__(self, image_size: int, patch: int, channels: int, d_model: int, cls: bool = True, stem: str = "patch"):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of patch {patch}")
        self.patch, self.stem = patch, stem
        self.n_patches = (image_size // patch) ** 2
        if stem == "conv":
            self.proj = conv_stem(channels, d_model, patch)
        else:
            self.proj = nn.Conv2d(channels, d_model, kernel_size=patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02) if cls else None
        self.hook_out = HookPoint()  # (B, T, d) T = N patches, plus one when a CLS vector leads

    def forward(self, images: Tensor) -> Tensor:  # (B, C, H, W) -> (B, N(+1), d)
        x = self.proj(images).flatten(2).transpose(1, 2)  # (B, N, d)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        return self.hook_out(x)

    @property
    def n_tokens(self) -> int:
        return self.n_patches + (self.cls is not None)


def conv_stem(channels: int, d_model: int, patch: int) -> nn.Sequential:
    """Stride-2 3x3 convolutions, log2(patch) of them, widening to ``d_model`` (GELU between them)."""
    if patch < 2 or patch & (patch - 1):
        raise ValueError(f"a conv stem needs a patch that is a power of two, at least 2, got {patch}")
    n = patch.bit_length() - 1
    layers: list[nn.Module] = []
    width = channels
    for i in range(n):
        out = d_model if i == n - 1 else max(d_model >> (n - 1 - i), 16)
        layers.append(nn.Conv2d(width, out, kernel_size=3, stride=2, padding=1))
        if i < n - 1:
            layers.append(nn.GELU())
        width = out
    return nn.Sequential(*layers)


class AudioPatchEmbedding(nn.Module):
    """Groups of ``patch_frames`` spectrogram frames (all mel bands) as tokens. ``stem="patch"``: each group
    projected on its own. ``stem="conv"``: stride-2 3x3 convolutions over bands and frames first (the subsampling
    of Conformer and Whisper), so a formant that an accent or a voice moves by a band or two still matches."""

    kind = "audio_patch_embedding"

    def __init__(self, n_mels: int, patch_frames: int, d_model: int, cls: bool = True, stem: str = "patch"):
        super().__init__()
        self.n_mels, self.patch_frames, self.stem = n_mels, patch_frames, stem
        if stem == "conv":
            self.proj = AudioConvStem(n_mels, patch_frames, d_model)
        else:
            self.proj = nn.Linear(n_mels * patch_frames, d_model)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02) if cls else None
        self.hook_out = HookPoint()  # (B, T, d) T = N patches, plus one when a CLS vector leads

    def forward(self, mels: Tensor) -> Tensor:  # (B, n_mels, F) -> (B, F // p (+1), d)
        B, M, F = mels.shape
        n = F // self.patch_frames
        if self.stem == "conv":
            x = self.proj(mels[:, :, : n * self.patch_frames])  # (B, n, d)
        else:
            x = mels[:, :, : n * self.patch_frames].reshape(B, M, n, self.patch_frames)
            x = self.proj(x.permute(0, 2, 1, 3).reshape(B, n, M * self.patch_frames))  # (B, n, d)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(B, -1, -1), x], dim=1)
        return self.hook_out(x)

    def token_mask(self, frame_mask: Tensor) -> Tensor:
        """Frame validity (B, F) to token validity (B, N(+1)): a patch is real if its first frame is."""
        n = frame_mask.shape[1] // self.patch_frames
        mask = frame_mask[:, : n * self.patch_frames : self.patch_frames]
        if self.cls is not None:
            mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        return mask


class AudioConvStem(nn.Module):
    """log2(patch_frames) stride-2 3x3 convolutions over (bands, frames), GELU after each, then one Linear of
    each frame group's channels x remaining bands to d_model: (B, n_mels, p * n) -> (B, n, d)."""

    def __init__(self, n_mels: int, patch_frames: int, d_model: int, width: int = 32):
        super().__init__()
        if patch_frames < 2 or patch_frames & (patch_frames - 1):
            raise ValueError(f"a conv stem needs patch_frames that is a power of two, at least 2, got {patch_frames}")
        layers: list[nn.Module] = []
        bands, channels = n_mels, 1
        for _ in range(patch_frames.bit_length() - 1):
            layers += [nn.Conv2d(channels, width, kernel_size=3, stride=2, padding=1), nn.GELU()]
            bands, channels = (bands + 1) // 2, width
        self.convs = nn.Sequential(*layers)
        self.out = nn.Linear(width * bands, d_model)

    def forward(self, mels: Tensor) -> Tensor:  # (B, M, p * n) -> (B, n, d)
        z = self.convs(mels.unsqueeze(1))  # (B, C, M', n)
        return self.out(z.permute(0, 3, 1, 2).flatten(2))  # (B, n, C * M') -> (B, n, d)
