"""Image classification sets: Fashion-MNIST (Debian dataset-fashion-mnist) and digits (scikit-learn)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from sora.data.builtin.entry import Builtin, Raw
from sora.data.builtin.system import require_path
from sora.data.config import DataConfig
from sora.data.formats import read_idx, read_npz

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = [f"{s}-{k}-ubyte.gz" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]
FASHION_LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def require_fashion_mnist() -> None:
    for name in FASHION_FILES:
        require_path(FASHION_DIR / name, "dataset-fashion-mnist", "fashion_mnist")


def fetch_fashion_mnist(folder: Path) -> dict:
    require_fashion_mnist()
    for name in FASHION_FILES:
        shutil.copyfile(FASHION_DIR / name, folder / name)
    return {"package": "dataset-fashion-mnist"}


def load_fashion_mnist(folder: Path, cfg: DataConfig, task: str) -> Raw:
    train = read_idx([str(folder / n) for n in FASHION_FILES if n.startswith("train")])
    test = read_idx([str(folder / n) for n in FASHION_FILES if n.startswith("t10k")])
    return Raw({"train": train, "test": test}, {"image": "image", "label": "label"}, FASHION_LABELS)


def fetch_digits(folder: Path) -> dict:
    from sklearn.datasets import load_digits  # 1.8 s to import: only this dataset needs it

    d = load_digits()
    images = (d.images * (255 / 16)).round().astype(np.uint8)  # 0..16 grey levels -> 0..255
    np.savez_compressed(folder / "digits.npz", image=images, label=d.target.astype(np.int64))
    return {"source": "sklearn.datasets.load_digits", "examples": len(images)}


def load_digits_npz(folder: Path, cfg: DataConfig, task: str) -> Raw:
    return Raw(
        {"all": read_npz([str(folder / "digits.npz")])},
        {"image": "image", "label": "label"},
        [str(i) for i in range(10)],
    )


FASHION_MNIST = Builtin(
    name="fashion_mnist",
    task="classification",
    tasks=("classification",),
    description="70,000 28x28 grey images of clothing, 10 classes (60,000 train + 10,000 test as given)",
    origin="Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, IDX files)",
    fetch_into=fetch_fashion_mnist,
    load=load_fashion_mnist,
    requires=require_fashion_mnist,
)

DIGITS = Builtin(
    name="digits",
    task="classification",
    tasks=("classification",),
    description="1,797 8x8 grey images of handwritten digits, 10 classes",
    origin="scikit-learn (sklearn.datasets.load_digits)",
    fetch_into=fetch_digits,
    load=load_digits_npz,
)
