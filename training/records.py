"""What a training run writes besides checkpoints: scalar logs (TensorBoard + CSV) and sample grids.

* :class:`ScalarLog`: ``logs/`` TensorBoard event files (``torch.utils.tensorboard.SummaryWriter``,
  tags ``train/<name>``) and ``logs/scalars.csv`` (columns ``step, epoch, wall_time`` then the scalar
  names). On resume, rows and events after the resumed step are dropped so the logs stay a single
  consistent history.
* :func:`save_sample_grid`: one PNG per call, each row a sample, columns side by side
  (Feature-Style: input | G(w) | G(w, F); pSp: input | target | output), images in [-1, 1] shown
  clamped, downscaled by bilinear halvings to at most ``max_side`` pixels per cell.
"""
from __future__ import annotations

import csv
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from vidinv.io.outputs import atomic_write
from vidinv.models.fs_encoder import downscale

__all__ = ["ScalarLog", "save_sample_grid", "read_scalars_csv"]


class ScalarLog:
    """Scalars to TensorBoard and to a CSV file (rank 0 only).

    Args:
        log_dir: folder of the event files and ``scalars.csv``.
        start_step: the step training (re)starts from; CSV rows with a larger step are removed and
            TensorBoard events after it are purged.
    """

    def __init__(self, log_dir: str | os.PathLike, start_step: int = 0):
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.dir / "scalars.csv"
        self.fields: list[str] | None = None
        if self.csv_path.is_file():
            rows, fields = read_scalars_csv(self.csv_path, with_fields=True)
            kept = [r for r in rows if int(float(r["step"])) <= start_step]
            if len(kept) != len(rows):
                self._rewrite(fields, kept)
            self.fields = fields or None
        self.tb = SummaryWriter(log_dir=str(self.dir), purge_step=start_step if start_step > 0 else None)

    def _rewrite(self, fields: list[str], rows: list[dict]) -> None:
        with atomic_write(self.csv_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)

    def log(self, step: int, epoch: int, scalars: Mapping[str, float]) -> None:
        """Write one row of scalars at ``step`` (TensorBoard tag ``train/<name>``)."""
        for k, v in scalars.items():
            self.tb.add_scalar(f"train/{k}", v, step)
        row = {"step": step, "epoch": epoch, "wall_time": f"{time.time():.3f}"}
        row.update({k: f"{float(v):.8g}" for k, v in scalars.items()})
        if self.fields is None:
            self.fields = list(row)
            with open(self.csv_path, "w", newline="", encoding="utf-8") as fh:
                csv.DictWriter(fh, fieldnames=self.fields).writeheader()
        missing = [k for k in row if k not in self.fields]
        if missing:
            rows = read_scalars_csv(self.csv_path)
            self.fields = self.fields + missing
            self._rewrite(self.fields, rows)
        with open(self.csv_path, "a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, fieldnames=self.fields, restval="").writerow(row)

    def flush(self) -> None:
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


def read_scalars_csv(path: str | os.PathLike, with_fields: bool = False):
    """Rows of a ``scalars.csv`` as dicts of strings (and the header when ``with_fields``)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        fields = list(reader.fieldnames or [])
    return (rows, fields) if with_fields else rows


@torch.no_grad()
def save_sample_grid(columns: Sequence[torch.Tensor], path: str | os.PathLike, max_side: int = 256,
                     max_rows: int = 4) -> Path:
    """Save a PNG grid: row ``i`` is ``columns[0][i] | columns[1][i] | ...``.

    Args:
        columns: tensors (B, 3, H_j, W_j) in [-1, 1] (any H_j; each is brought to the first column's size).
        path: PNG file to write (parent folders are created).
        max_side: cells are halved (bilinearly, as the reference ``downscale``) while larger than this.
        max_rows: at most this many samples.

    Returns:
        ``path``.
    """
    import torch.nn.functional as F
    from torchvision.utils import save_image

    size = columns[0].shape[-1]
    times = 0
    while size > max_side:
        size //= 2
        times += 1
    cells = []
    for c in columns:
        c = c[:max_rows].detach().float().cpu()
        if c.shape[-1] != columns[0].shape[-1]:
            c = F.interpolate(c, size=tuple(columns[0].shape[-2:]), mode="bilinear", align_corners=False)
        cells.append(downscale(c, times))
    grid = torch.cat(cells, dim=3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(((grid + 1) / 2).clamp(0, 1), str(path), nrow=1, padding=0)
    return path
