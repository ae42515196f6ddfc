"""The seam between the training loop and what is trained: :class:`TrainingTask`.

:func:`training.runner.train` knows nothing about a particular encoder: it asks the task which weight
files the run needs (:meth:`TrainingTask.weight_roles`), builds it with the resolved files, feeds it
batches of real images (:meth:`TrainingTask.dataset_options`), back-propagates what
:meth:`TrainingTask.compute` returns and, at the end, calls :meth:`TrainingTask.export`. The
implementations are :class:`training.fs_task.FSTask` (Feature-Style encoder) and
:class:`training.psp_task.PSPTask` (pSp); the runner picks one by the config's class
(:attr:`TrainingTask.config_class`). A new kind of encoder training is a new subclass, its config
dataclass (with a ``validate()``) in :mod:`training.config`, and one entry in
:data:`training.runner.TRAINING_TASKS`.
"""
from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from vidinv.training.networks import WeightFiles

__all__ = ["TrainingTask", "StepOutput"]

#: What :meth:`TrainingTask.compute` returns: ``(total, terms, visuals)``.
StepOutput = tuple[torch.Tensor, dict[str, torch.Tensor], list[torch.Tensor]]


class TrainingTask(abc.ABC):
    """One kind of encoder training: its networks, losses, one step's loss, and its export.

    Class attributes:
        name: the task's name on the command line (``python -m vidinv.training NAME``) and in checkpoints
            (``state["task"]``).
        config_class: the config dataclass of :mod:`training.config` the task is built from.
        default_generator: registry name of the generator used when ``weights.generator`` is null.
        loss_flags: command-line flags that disable the losses needing a weight file (for messages).
        no_real_images_hint: appended to the error raised when no real images are configured.

    Instance attributes (set by ``__init__(cfg, files, device)``):
        encoder: the trained module (on ``device``), unwrapped; the runner wraps it in
            DistributedDataParallel under torchrun and checkpoints its ``state_dict``.
        image_size: side in pixels at which real images are loaded.
        real_per_step: real images per step and rank (0: the dataset is not opened).
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    default_generator: ClassVar[str]
    loss_flags: ClassVar[tuple[str, ...]] = ("--no-id-loss", "--no-lpips-loss")
    no_real_images_hint: ClassVar[str] = ""

    encoder: nn.Module
    image_size: int
    real_per_step: int

    @abc.abstractmethod
    def __init__(self, cfg: Any, files: WeightFiles, device: torch.device) -> None:
        """Build the networks and losses of a run.

        Args:
            cfg: a validated instance of :attr:`config_class`.
            files: the weight files resolved from :meth:`weight_roles`.
            device: device of the run.

        Raises:
            training.config.ConfigError: the config does not fit the networks.
        """

    @classmethod
    def weight_roles(cls, cfg: Any) -> tuple[dict[str, str], dict[str, str]]:
        """The weight files a run of ``cfg`` needs, before anything is built.

        Returns:
            ``(required, optional)``: role (a :class:`training.networks.WeightFiles` field) -> configured
            value (registry name or path). This base implementation names the generator and, when the
            LPIPS term is on with the pretrained trunk, the AlexNet file; subclasses add their own.
        """
        w = cfg.weights
        required = {"generator": w.generator or cls.default_generator}
        if cfg.loss.use_lpips and not w.lpips_random_backbone:
            required["lpips_alexnet"] = w.lpips_alexnet
        return required, {}

    @abc.abstractmethod
    def dataset_options(self) -> dict:
        """Keyword arguments of :class:`training.data.FaceImageDataset` for this task (``hflip``, ``sr_factors``)."""

    @abc.abstractmethod
    def compute(self, model: nn.Module, real: dict | None, step: int, g: torch.Generator) -> StepOutput:
        """Losses of one step (the runner does backward, the optimiser and the scheduler).

        Args:
            model: :attr:`encoder`, possibly wrapped in DistributedDataParallel.
            real: a batch from :class:`training.data.FaceImageDataset`, or None when
                :attr:`real_per_step` is 0.
            step: 0-based step.
            g: this step's CPU generator (all random draws of the step).

        Returns:
            ``(total, terms, visuals)``: the 0-dim loss to back-propagate, a dict of 0-dim tensors
            logged as scalars (it holds ``"total"``), and image columns (N, 3, H, W) in [-1, 1] for the
            sample grids.
        """

    @abc.abstractmethod
    def export(self, folder: str | os.PathLike) -> Path:
        """Write the trained encoder into ``folder`` in its official layout; returns the file written."""
