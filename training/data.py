"""Real-image data: aligned face folders, per-rank deterministic sample streams, and batches.

Ordering is stateless and resumable: the stream of one rank is a function of ``(seed, rank,
world_size)`` only (:class:`ShardedStream`, the ``DistributedSampler`` rule: one permutation of the
dataset per pass, padded by repeating its start to a multiple of the world size, rank ``r`` taking
every ``world_size``-th index from ``r``). The ``g``-th item a rank consumes is ``stream.key(g)``, so a
run that stopped after ``s`` steps of ``b`` images resumes at item ``s * b`` exactly. Per-sample
randomness (flip, super-resolution factor) is drawn from a generator seeded by the sample's position,
not from global state, so it does not depend on worker processes or on resuming.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vidinv.training.degrade import degrade

__all__ = [
    "IMAGE_EXTENSIONS",
    "list_images",
    "split_train",
    "mix_seed",
    "SampleKey",
    "ShardedStream",
    "StepBatchSampler",
    "FaceImageDataset",
    "load_image",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def mix_seed(*parts: int) -> int:
    """A 63-bit seed mixing integers (``numpy.random.SeedSequence``), for per-step / per-sample generators."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0]
               & 0x7FFFFFFFFFFFFFFF)


def list_images(folder: str | os.PathLike, recursive: bool = True,
                extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files of ``folder`` sorted by their path relative to it (the reference sorts file names).

    Raises:
        FileNotFoundError: the folder does not exist.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    exts = {e.lower() for e in extensions}
    it = root.rglob("*") if recursive else root.iterdir()
    files = [p for p in it if p.is_file() and p.suffix.lower() in exts]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def split_train(files: Sequence[Path], train_split: float) -> list[Path]:
    """The first ``int(train_split * len(files))`` files (FS ``MyDataSet`` training split); all when 1."""
    if train_split >= 1:
        return list(files)
    return list(files[: int(train_split * len(files))])


@dataclass(frozen=True)
class SampleKey:
    """Where a sample sits in a rank's stream: pass number, position in the rank's pass, dataset index."""

    epoch: int
    position: int
    index: int


class ShardedStream:
    """Deterministic, resumable, per-rank infinite stream of dataset indices (``DistributedSampler`` rule).

    Args:
        n: dataset size (> 0).
        rank, world_size: this process and the number of processes.
        seed: shuffling seed (pass ``p`` uses permutation ``randperm(n, seed=mix(seed, p))``).
        shuffle: False keeps the dataset order in every pass.

    Attributes:
        per_rank: items per rank and pass, ``ceil(n / world_size)``.
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True):
        if n <= 0:
            raise ValueError("the dataset is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        self.n, self.rank, self.world_size, self.seed, self.shuffle = n, rank, world_size, seed, shuffle
        self.per_rank = math.ceil(n / world_size)
        self._cache: tuple[int, list[int]] | None = None

    def _pass_indices(self, p: int) -> list[int]:
        if self._cache is not None and self._cache[0] == p:
            return self._cache[1]
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, p))
            perm = torch.randperm(self.n, generator=g).tolist()
        else:
            perm = list(range(self.n))
        total = self.per_rank * self.world_size
        while len(perm) < total:
            perm = perm + perm[: total - len(perm)]
        mine = perm[self.rank:total:self.world_size]
        self._cache = (p, mine)
        return mine

    def key(self, g: int) -> SampleKey:
        """The ``g``-th item (0-based) this rank consumes."""
        p, o = divmod(int(g), self.per_rank)
        return SampleKey(p, o, self._pass_indices(p)[o])

    def keys(self, start: int, count: int) -> list[SampleKey]:
        """Items ``start .. start + count - 1``."""
        return [self.key(g) for g in range(start, start + count)]


class StepBatchSampler:
    """Batch sampler for ``DataLoader(batch_sampler=...)``: step ``s`` gets items ``s*b .. s*b + b - 1``.

    Args:
        stream: the rank's :class:`ShardedStream`.
        batch_size: items per step.
        start_step, stop_step: steps to yield (resume from ``start_step``).
    """

    def __init__(self, stream: ShardedStream, batch_size: int, start_step: int, stop_step: int):
        self.stream, self.batch_size = stream, int(batch_size)
        self.start_step, self.stop_step = int(start_step), int(stop_step)

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for s in range(self.start_step, self.stop_step):
            yield self.stream.keys(s * self.batch_size, self.batch_size)


def load_image(path: str | os.PathLike, size: int) -> torch.Tensor:
    """An RGB image resized to ``size`` x ``size`` (PIL bilinear, as ``transforms.Resize``), float (3, S, S) in [0, 1].

    Raises:
        OSError: unreadable image (the message names the file).
    """
    from PIL import Image

    try:
        with Image.open(path) as f:  # a new name: `f` is an ImageFile, `rgb` an Image (Pillow 12 stubs)
            rgb = f.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(rgb, dtype=np.uint8).copy()
    except OSError as exc:
        raise OSError(f"cannot read training image {path}: {exc}") from exc
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


class FaceImageDataset(Dataset):
    """Aligned face images as training samples, indexed by :class:`SampleKey`.

    Each item is a dict:

    * ``"target"``: (3, size, size) float in [-1, 1] (``(v / 255 - 0.5) / 0.5``), flipped horizontally
      with probability 0.5 when ``hflip``;
    * ``"input"``: the encoder input: the target itself, or with ``sr_factors`` the pSp
      super-resolution degradation of it (:func:`training.degrade.degrade`), same range and size;
    * ``"factor"``: the downsampling factor drawn (1 without super-resolution);
    * ``"index"``: the dataset index.

    Args:
        files: image paths.
        size: training resolution (pixels).
        seed: run seed; per-sample draws use ``mix_seed(seed, epoch, position, index)``.
        hflip: random horizontal flip.
        sr_factors: super-resolution factors (pSp), or None.
    """

    def __init__(self, files: Sequence[str | os.PathLike], size: int, seed: int = 0, hflip: bool = False,
                 sr_factors: Sequence[int] | None = None):
        self.files = [Path(f) for f in files]
        if not self.files:
            raise ValueError("no training images")
        self.size, self.seed, self.hflip = int(size), int(seed), bool(hflip)
        self.sr_factors = tuple(int(f) for f in sr_factors) if sr_factors else None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: SampleKey | int) -> dict:
        if isinstance(key, (int, np.integer)):
            key = SampleKey(0, int(key), int(key))
        g = torch.Generator().manual_seed(mix_seed(self.seed, 7, key.epoch, key.position, key.index))
        x = load_image(self.files[key.index], self.size)
        if self.hflip and torch.rand((), generator=g).item() < 0.5:
            x = x.flip(-1)
        factor = 1
        inp = x
        if self.sr_factors:
            factor = self.sr_factors[int(torch.randint(len(self.sr_factors), (), generator=g))]
            inp = degrade(x, factor)
        return {"target": x * 2.0 - 1.0, "input": inp * 2.0 - 1.0, "factor": factor, "index": key.index}
