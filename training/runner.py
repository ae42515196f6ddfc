"""The training loop shared by all tasks: seeding, data, optimisation, logs, samples, checkpoints, resume.

:func:`train` runs the :class:`training.task.TrainingTask` of the config's class
(:data:`TRAINING_TASKS`: :class:`training.fs_task.FSTask` or :class:`training.psp_task.PSPTask`) for
``run.max_steps`` steps (single process, or one rank of a ``torchrun`` job; see
:mod:`training.distributed`). :func:`train` restores (or refuses to overwrite) a run, builds the task
and its data, then :class:`_Session` does each step and its logs, samples and checkpoints:

* Determinism: every random draw comes from generators seeded from ``run.seed`` (data order and
  per-sample draws by position, synthetic z and noise by step and rank), global RNGs are seeded too,
  cuDNN runs in deterministic mode. A resumed run continues bit for bit where it stopped (same
  machine, device and world size): the checkpoint holds the encoder, optimiser, scheduler, gradient
  scaler, each rank's RNG states and the data position (``step * batch`` items per rank).
* Each step: zero grads, losses under ``torch.autocast`` (``run.precision``), backward (scaled for
  fp16), optimiser step, scheduler step (learning rate ``lr * lr_gamma ** (epoch // lr_step_epochs)``,
  the reference StepLR stepped per epoch).
* Rank 0 writes: scalars every ``log_every`` steps (rank means; TensorBoard + CSV), a PNG sample grid
  every ``sample_every`` steps, a checkpoint every ``checkpoint_every`` steps and at the end, and the
  official-layout export at the end. A non-finite loss stops the run with the terms that went bad.
"""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from vidinv.device import autocast
from vidinv.io.outputs import atomic_save, atomic_write_text
from vidinv.training import distributed
from vidinv.training.config import (
    RUN_CONTROL_KEYS,
    ConfigError,
    FSTrainConfig,
    OptimConfig,
    PSPTrainConfig,
    config_to_dict,
    flatten_dict,
    upgrade_legacy_keys,
)
from vidinv.training.data import FaceImageDataset, ShardedStream, StepBatchSampler, list_images, mix_seed, split_train
from vidinv.training.export import cpu_state_dict
from vidinv.training.fs_task import FSTask
from vidinv.training.networks import resolve_weight_files
from vidinv.training.psp_task import PSPTask
from vidinv.training.ranger import Ranger
from vidinv.training.records import ScalarLog, save_sample_grid
from vidinv.training.state import (
    STATE_FORMAT,
    capture_rng,
    checkpoint_name,
    latest_checkpoint,
    prune_checkpoints,
    read_state,
    restore_rng,
)
from vidinv.training.task import TrainingTask
from vidinv.training.video_faces import extract_video_faces

log = logging.getLogger(__name__)

__all__ = ["TRAINING_TASKS", "TrainResult", "train", "task_type", "build_optimizer", "lr_factor",
           "config_differences", "state_digest"]

#: The training tasks by name (``python -m vidinv.training NAME``, a checkpoint's ``"task"``).
TRAINING_TASKS: dict[str, type[TrainingTask]] = {t.name: t for t in (FSTask, PSPTask)}
_BY_CONFIG: dict[type, type[TrainingTask]] = {t.config_class: t for t in TRAINING_TASKS.values()}


def task_type(cfg) -> type[TrainingTask]:
    """The :class:`training.task.TrainingTask` subclass that trains ``cfg`` (by the config's class).

    Raises:
        TypeError: ``cfg`` is not the config of a registered task.
    """
    try:
        return _BY_CONFIG[type(cfg)]
    except KeyError:
        raise TypeError(f"no training task takes a {type(cfg).__name__}; expected one of "
                        f"{', '.join(c.__name__ for c in _BY_CONFIG)}") from None


@dataclass
class TrainResult:
    """Outcome of :func:`train` (on every rank; files are written by rank 0 only).

    Attributes:
        step: completed steps.
        out_dir: the run folder.
        checkpoint: the last checkpoint written (or resumed from), or None.
        export: the exported weight file, or None.
        scalars: the last logged scalars (rank means).
        encoder_state: the final encoder state_dict (CPU copies).
        replica_digests: sha256 of the final encoder state on every rank (one entry in a single process).
    """

    step: int
    out_dir: Path
    checkpoint: Path | None = None
    export: Path | None = None
    scalars: dict[str, float] = field(default_factory=dict)
    encoder_state: dict[str, torch.Tensor] = field(default_factory=dict)
    replica_digests: list[str] = field(default_factory=list)


def build_optimizer(cfg: OptimConfig, params) -> torch.optim.Optimizer:
    """Ranger (default eps 1e-5) or Adam (default eps 1e-8) over ``params`` with the config's lr/betas/decay."""
    betas = (float(cfg.betas[0]), float(cfg.betas[1]))
    if cfg.name == "ranger":
        return Ranger(params, lr=cfg.lr, betas=betas, eps=cfg.eps or 1e-5, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=betas, eps=cfg.eps or 1e-8, weight_decay=cfg.weight_decay)


def lr_factor(step: int, steps_per_epoch: int, step_epochs: int | None, gamma: float) -> float:
    """Learning-rate multiplier at ``step``: ``gamma ** (epoch // step_epochs)`` (1 without decay)."""
    if not step_epochs:
        return 1.0
    return gamma ** ((step // steps_per_epoch) // step_epochs)


def config_differences(a: dict, b: dict, ignore=RUN_CONTROL_KEYS) -> list[str]:
    """``"key: a -> b"`` for every dotted key whose values differ, outside ``ignore``."""
    fa = flatten_dict(a)
    fb = flatten_dict(b)
    keys = sorted((set(fa) | set(fb)) - set(ignore))
    return [f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}" for k in keys if fa.get(k) != fb.get(k)]


def state_digest(module: torch.nn.Module) -> str:
    """sha256 over a module's state_dict (names, dtypes, shapes and bytes, in order)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        t = v.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP broadcasts them at the start of each forward; doing it after the step as well keeps the ranks'
    encoders identical between steps (checkpoints, final weights).
    """
    import torch.distributed as dist

    for b in module.buffers():
        dist.broadcast(b, src=0)


def _deterministic(device: torch.device) -> None:
    # CPU kernels are deterministic already; on CUDA ask cuDNN/cuBLAS for deterministic algorithms.
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def _seed_globals(seed: int, rank: int) -> None:
    s = mix_seed(seed, 3, rank)
    random.seed(s)
    np.random.seed(s % 2 ** 32)
    torch.manual_seed(s)


def _resume_path(resume, ckpt_dir: Path) -> Path | None:
    if resume in (None, False):
        return None
    if resume is True or resume == "":
        p = latest_checkpoint(ckpt_dir)
        if p is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {ckpt_dir}")
        return p
    p = Path(resume)
    if p.is_dir():
        q = latest_checkpoint(p / "checkpoints") or latest_checkpoint(p)
        if q is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {p}")
        return q
    if not p.is_file():
        raise FileNotFoundError(f"--resume: {p} does not exist")
    return p


def _real_files(cfg, task: TrainingTask, info, out_dir: Path) -> list[Path]:
    d = cfg.data
    if not (d.real_dir or d.videos):
        raise ConfigError(f"no real images: set data.real_dir (a folder of aligned faces, --real-dir) or "
                          f"data.videos{task.no_real_images_hint}")
    files: list[Path] = []
    if d.real_dir:
        files = split_train(list_images(d.real_dir, d.recursive), d.train_split)
        if not files:
            raise FileNotFoundError(f"data.real_dir {d.real_dir} holds no images ({', '.join(('.jpg', '.png'))} ...)")
    if d.videos:

        cache = Path(d.video_cache_dir) if d.video_cache_dir else out_dir / "video_faces"
        kw = dict(every=d.video_every, max_frames=d.video_max_frames, detector=d.video_detector)
        if info.is_main:
            extract_video_faces(d.videos, cache, task.image_size, **kw)
        distributed.barrier(info)
        files += split_train(extract_video_faces(d.videos, cache, task.image_size, **kw), d.train_split)
    return files


def train(cfg: FSTrainConfig | PSPTrainConfig, resume: str | os.PathLike | bool | None = None) -> TrainResult:
    """Train an encoder as configured (see the module docstring).

    Args:
        cfg: a validated :class:`training.config.FSTrainConfig` or :class:`training.config.PSPTrainConfig`.
        resume: None/False (start fresh; an existing checkpoint folder is refused), True (the latest
            checkpoint of ``run.out_dir``), or a checkpoint file / run folder.

    Returns:
        :class:`TrainResult`.

    Raises:
        vidinv.weights.MissingWeightsError: a weight file an enabled loss needs is missing.
        ConfigError: the config does not fit the networks, or differs from the resumed checkpoint's.
        FileExistsError: ``run.out_dir`` already holds checkpoints and ``resume`` is not set.
        FloatingPointError: a loss became NaN or infinite.
    """
    info = distributed.setup(cfg.run.device)
    threads = torch.get_num_threads()
    try:
        return _train(cfg, resume, info)
    finally:
        torch.set_num_threads(threads)
        distributed.teardown(info)


def _train(cfg, resume, info: distributed.DistInfo) -> TrainResult:
    kind = task_type(cfg)
    r = cfg.run
    out_dir = Path(r.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    if r.num_threads:
        torch.set_num_threads(r.num_threads)
    _deterministic(info.device)
    _seed_globals(r.seed, info.rank)

    resume_path, state = _read_resume_state(cfg, kind.name, resume, ckpt_dir)
    task = _build_task(cfg, kind, info)
    enc = task.encoder
    session = _Session(cfg, task, info, out_dir)
    start = session.restore(state, resume_path)
    loader_it = session.open_loader(start)
    result = TrainResult(step=start, out_dir=out_dir, checkpoint=resume_path)
    session.open_logs(start)
    enc.train()
    try:
        for step in range(start, r.max_steps):
            real = next(loader_it) if loader_it is not None else None
            terms, visuals = session.step(step, real)
            result.step = step + 1
            session.log_and_checkpoint(step + 1, terms, visuals, result)
        session.finish(result)
    finally:
        session.close_logs()
    result.encoder_state = cpu_state_dict(enc)
    return result


def _read_resume_state(cfg, task_name: str, resume, ckpt_dir: Path) -> tuple[Path | None, dict | None]:
    """The checkpoint to resume and its state, checked against ``cfg``; ``(None, None)`` for a fresh run.

    Raises:
        ConfigError: the checkpoint is of another task or was trained with other settings.
        FileExistsError: a fresh run into a folder that holds checkpoints.
        FileNotFoundError: ``resume`` names no checkpoint.
    """
    resume_path = _resume_path(resume, ckpt_dir)
    if resume_path is None:
        if latest_checkpoint(ckpt_dir) is not None:
            raise FileExistsError(f"{ckpt_dir} already holds checkpoints: pass --resume to continue that run, or "
                                  "choose another run.out_dir")
        return None, None
    state = read_state(resume_path)
    if state.get("task") != task_name:
        raise ConfigError(f"{resume_path} is a {state.get('task')!r} checkpoint, not {task_name!r}")
    saved = upgrade_legacy_keys(task_name, state["config"], str(resume_path), warn=False)
    diffs = config_differences(saved, config_to_dict(cfg))
    if diffs:
        raise ConfigError(f"the config differs from the one {resume_path} was trained with (a resumed run "
                          "must use the same settings):\n  " + "\n  ".join(diffs))
    return resume_path, state


def _build_task(cfg, kind: type[TrainingTask], info: distributed.DistInfo) -> TrainingTask:
    """Resolve the weight files ``kind`` needs (rank 0 first when it may download) and build the task."""
    required, optional = kind.weight_roles(cfg)
    if cfg.weights.fetch and info.world_size > 1:
        files = resolve_weight_files(cfg.weights, required, optional) if info.is_main else None
        distributed.barrier(info)
        files = files or resolve_weight_files(cfg.weights, required, optional)
    else:
        files = resolve_weight_files(cfg.weights, required, optional)
    return kind(cfg, files, info.device)


class _Session:
    """The live objects of one run between the task and the loop: data, DDP model, optimiser,
    scheduler, gradient scaler, logs; one method per part of the loop (restore, step,
    log-and-checkpoint, finish)."""

    def __init__(self, cfg, task: TrainingTask, info: distributed.DistInfo, out_dir: Path):
        self.cfg, self.task, self.info = cfg, task, info
        self.out_dir, self.ckpt_dir = out_dir, out_dir / "checkpoints"
        r = cfg.run
        self.batch = task.real_per_step
        self.stream: ShardedStream | None = None
        self.dataset: FaceImageDataset | None = None
        if self.batch > 0:
            real = _real_files(cfg, task, info, out_dir)
            self.dataset = FaceImageDataset(real, task.image_size, seed=r.seed, **task.dataset_options())
            self.stream = ShardedStream(len(self.dataset), info.rank, info.world_size, seed=r.seed)
        self.steps_per_epoch = r.steps_per_epoch or max(1, (self.stream.per_rank // self.batch) if self.stream else 1)
        self.amp = autocast(info.device, r.precision)  # also on the CPU (bf16 / fp16 autocast)
        # built by restore(), which _train calls right after construction
        self.model: torch.nn.Module
        self.optimizer: torch.optim.Optimizer
        self.scheduler: torch.optim.lr_scheduler.LambdaLR
        self.scaler: torch.amp.GradScaler | None = None
        # opened by open_logs() on rank 0
        self.scalars_log: ScalarLog | None = None
        self.pbar: Any = None  # a tqdm progress bar

    # ------------------------------------------------------------------------------------ restore
    def restore(self, state: dict | None, resume_path: Path | None) -> int:
        """Build what training updates (the DDP wrapper under torchrun, optimiser, learning-rate
        schedule, fp16 gradient scaler) and, from a checkpoint's ``state``, load the encoder, their
        states and this rank's RNG states.

        Returns:
            the step to continue from (0 without ``state``).

        Raises:
            ConfigError: the checkpoint's data position does not match the batch size.
        """
        info, batch, enc = self.info, self.batch, self.task.encoder
        start = 0
        if state is not None:
            enc.load_state_dict(state["encoder"])  # before DDP wraps it
            start = int(state["step"])
            consumed = int((state.get("data") or {}).get("items_per_rank", start * batch))
            if consumed != start * batch:
                raise ConfigError(f"{resume_path}: {consumed} real images per rank were consumed in {start} "
                                  f"steps, which does not match {batch} per step")
            if int(state.get("world_size", 1)) != info.world_size:
                log.warning("resuming a %s-rank checkpoint with %d rank(s): the data shards differ, so the run "
                            "continues but not bit for bit", state.get("world_size"), info.world_size)
        device, o = info.device, self.cfg.optim
        self.model = enc
        if info.initialized:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(enc, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = build_optimizer(o, enc.parameters())
        spe = self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, spe, o.lr_step_epochs, o.lr_gamma))
        self.scaler = torch.amp.GradScaler(device.type) if self.cfg.run.precision == "fp16" else None
        if state is None:
            return start
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rngs = state.get("rng") or []
        if len(rngs) == info.world_size:
            restore_rng(rngs[info.rank])
        else:
            log.warning("checkpoint has RNG states of %d rank(s), this run has %d: global RNGs not restored "
                        "(training draws do not use them, but the run may not be bit-identical)",
                        len(rngs), info.world_size)
        return start

    def open_loader(self, start: int):
        """Iterator over this rank's real batches from step ``start`` on (None without real images)."""
        if self.dataset is None or self.stream is None:  # both or neither (no real images)
            return None
        r = self.cfg.run
        loader = DataLoader(self.dataset, batch_sampler=StepBatchSampler(self.stream, self.batch, start, r.max_steps),
                            num_workers=self.cfg.data.num_workers, pin_memory=self.info.device.type == "cuda",
                            persistent_workers=False)
        return iter(loader)

    def open_logs(self, start: int) -> None:
        """Scalar log (TensorBoard + CSV, from ``start``) and progress bar, on rank 0."""
        r, info = self.cfg.run, self.info
        self.scalars_log = ScalarLog(self.out_dir / "logs", start) if info.is_main else None
        if info.is_main and r.progress:
            from tqdm.auto import tqdm

            self.pbar = tqdm(total=r.max_steps, initial=start, unit="it", dynamic_ncols=True,
                             desc=f"train {self.task.name}")

    # --------------------------------------------------------------------------------------- step
    def step(self, step: int, real: dict | None) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """One optimisation step: zero grads, the task's losses under autocast, backward (scaled for
        fp16), optimiser and scheduler steps, and rank 0's buffers broadcast under torchrun.

        Returns:
            the task's loss terms and sample-grid columns.
        """
        r, info = self.cfg.run, self.info
        g = torch.Generator().manual_seed(mix_seed(r.seed, 1, info.rank, step))
        self.optimizer.zero_grad(set_to_none=True)
        with self.amp:
            total, terms, visuals = self.task.compute(self.model, real, step, g)
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            total.backward()
            self.optimizer.step()
        self.scheduler.step()
        if info.initialized:
            _broadcast_buffers(self.task.encoder)
        return terms, visuals

    # ------------------------------------------------------------------------- log and checkpoint
    def log_and_checkpoint(self, done: int, terms: dict[str, torch.Tensor], visuals: list[torch.Tensor],
                           result: TrainResult) -> None:
        """After step ``done`` (1-based): scalars (rank means; non-finite ones stop the run), the sample
        grid, the checkpoint, the progress bar, each at its interval.

        Raises:
            FloatingPointError: a logged loss term is NaN or infinite.
        """
        r, info = self.cfg.run, self.info
        if done % r.log_every == 0 or done == r.max_steps:
            keys = list(terms)
            vals = distributed.all_mean(torch.stack([terms[k].detach().float() for k in keys]), info)
            scalars = {k: float(v) for k, v in zip(keys, vals.cpu())}
            scalars["lr"] = self.optimizer.param_groups[0]["lr"]
            result.scalars = scalars
            bad = [k for k, v in scalars.items() if not np.isfinite(v)]
            if bad:
                raise FloatingPointError(f"step {done}: non-finite loss term(s) {', '.join(bad)} "
                                         f"({scalars}); lower optim.lr or use run.precision fp32")
            if self.scalars_log is not None:
                self.scalars_log.log(done, (done - 1) // self.steps_per_epoch, scalars)
            if self.pbar is not None:
                self.pbar.set_postfix(loss=f"{scalars['total']:.4f}", refresh=False)
        if info.is_main and r.sample_every and done % r.sample_every == 0:
            save_sample_grid(visuals, self.out_dir / "samples" / f"step_{done:08d}.png")
        if done % r.checkpoint_every == 0 or done == r.max_steps:
            result.checkpoint = _save_checkpoint(self.task.name, self.cfg, done, self.task.encoder, self.optimizer,
                                                 self.scheduler, self.scaler, self.batch, info, self.ckpt_dir)
        if self.pbar is not None:
            self.pbar.update(1)

    def finish(self, result: TrainResult) -> None:
        """Check that every rank holds the same weights (``logs/replicas.json`` under torchrun) and
        export the encoder when ``run.max_steps`` was reached.

        Raises:
            RuntimeError: the ranks' encoders differ.
        """
        r, info, out_dir = self.cfg.run, self.info, self.out_dir
        result.replica_digests = distributed.gather_objects(state_digest(self.task.encoder), info)
        if info.is_main and info.world_size > 1:
            import json

            (out_dir / "logs").mkdir(parents=True, exist_ok=True)
            (out_dir / "logs" / "replicas.json").write_text(json.dumps(
                {"step": result.step, "world_size": info.world_size, "sha256": result.replica_digests}, indent=1))
        if len(set(result.replica_digests)) > 1:
            raise RuntimeError(f"the encoder weights differ between ranks after step {result.step}: "
                               f"{result.replica_digests}")
        if result.step >= r.max_steps and r.export_on_finish and info.is_main:
            result.export = self.task.export(out_dir / "export")
        distributed.barrier(info)

    def close_logs(self) -> None:
        """Close the progress bar and the scalar log (also after an error)."""
        if self.pbar is not None:
            self.pbar.close()
        if self.scalars_log is not None:
            self.scalars_log.close()


def _save_checkpoint(task_name, cfg, done, enc, optimizer, scheduler, scaler, batch, info, ckpt_dir: Path):
    rngs = distributed.gather_objects(capture_rng(), info)
    path = ckpt_dir / checkpoint_name(done)
    if info.is_main:
        state = {
            "format": STATE_FORMAT,
            "task": task_name,
            "step": done,
            "config": config_to_dict(cfg),
            "encoder": cpu_state_dict(enc),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rngs,
            "data": {"items_per_rank": done * batch},
            "world_size": info.world_size,
        }
        atomic_save(state, path)
        atomic_write_text(ckpt_dir / "latest", path.name + "\n")
        prune_checkpoints(ckpt_dir, cfg.run.keep_checkpoints)
    distributed.barrier(info)
    return path
