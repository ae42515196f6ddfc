"""The training loop shared by both tasks: seeding, data, optimisation, logs, samples, checkpoints, resume.

:func:`train` runs a :class:`training.fs_task.FSTask` or :class:`training.psp_task.PSPTask` for
``run.max_steps`` steps (single process, or one rank of a ``torchrun`` job; see
:mod:`training.distributed`):

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

import contextlib
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from training import distributed
from training.config import (RUN_CONTROL_KEYS, ConfigError, FSTrainConfig, OptimConfig, PSPTrainConfig,
                             config_to_dict, flatten_dict)
from training.data import FaceImageDataset, ShardedStream, StepBatchSampler, list_images, mix_seed, split_train
from training.export import cpu_state_dict
from training.networks import resolve_weight_files
from training.ranger import Ranger
from training.records import ScalarLog, save_sample_grid
from training.state import (STATE_FORMAT, atomic_torch_save, atomic_write_text, capture_rng, checkpoint_name,
                            latest_checkpoint, prune_checkpoints, read_state, restore_rng)

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "train", "build_optimizer", "lr_factor", "config_differences", "state_digest"]


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


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


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


def _real_files(cfg, task, info, out_dir: Path) -> list[Path]:
    d = cfg.data
    if not (d.real_dir or d.videos):
        hint = "; or set real_per_batch: 0 to train on synthetic samples only" if isinstance(cfg, FSTrainConfig) else ""
        raise ConfigError(f"no real images: set data.real_dir (a folder of aligned faces, --real-dir) or "
                          f"data.videos{hint}")
    files: list[Path] = []
    if d.real_dir:
        files = split_train(list_images(d.real_dir, d.recursive), d.train_split)
        if not files:
            raise FileNotFoundError(f"data.real_dir {d.real_dir} holds no images ({', '.join(('.jpg', '.png'))} ...)")
    if d.videos:
        from training.video_faces import extract_video_faces

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
    from training.fs_task import FSTask
    from training.psp_task import PSPTask

    r = cfg.run
    task_name = "fs" if isinstance(cfg, FSTrainConfig) else "psp"
    out_dir = Path(r.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    device = info.device
    if r.num_threads:
        torch.set_num_threads(r.num_threads)
    _deterministic(device)
    _seed_globals(r.seed, info.rank)

    resume_path = _resume_path(resume, ckpt_dir)
    state = None
    if resume_path is not None:
        state = read_state(resume_path)
        if state.get("task") != task_name:
            raise ConfigError(f"{resume_path} is a {state.get('task')!r} checkpoint, not {task_name!r}")
        diffs = config_differences(state["config"], config_to_dict(cfg))
        if diffs:
            raise ConfigError(f"the config differs from the one {resume_path} was trained with (a resumed run "
                              "must use the same settings):\n  " + "\n  ".join(diffs))
    elif latest_checkpoint(ckpt_dir) is not None:
        raise FileExistsError(f"{ckpt_dir} already holds checkpoints: pass --resume to continue that run, or "
                              "choose another run.out_dir")

    if cfg.weights.fetch and info.world_size > 1:
        files = resolve_weight_files(cfg) if info.is_main else None
        distributed.barrier(info)
        files = files or resolve_weight_files(cfg)
    else:
        files = resolve_weight_files(cfg)
    task = FSTask(cfg, files, device) if task_name == "fs" else PSPTask(cfg, files, device)
    enc = task.encoder

    # data
    batch = task.real_per_step
    stream = dataset = None
    if batch > 0:
        real = _real_files(cfg, task, info, out_dir)
        dataset = FaceImageDataset(real, task.image_size, seed=r.seed, **task.dataset_options())
        stream = ShardedStream(len(dataset), info.rank, info.world_size, seed=r.seed)
    steps_per_epoch = r.steps_per_epoch or max(1, (stream.per_rank // batch) if stream else 1)

    start = 0
    if state is not None:
        enc.load_state_dict(state["encoder"])
        start = int(state["step"])
        consumed = int((state.get("data") or {}).get("items_per_rank", start * batch))
        if consumed != start * batch:
            raise ConfigError(f"{resume_path}: {consumed} real images per rank were consumed in {start} steps, "
                              f"which does not match {batch} per step")
        if int(state.get("world_size", 1)) != info.world_size:
            log.warning("resuming a %s-rank checkpoint with %d rank(s): the data shards differ, so the run "
                        "continues but not bit for bit", state.get("world_size"), info.world_size)
    model = enc
    if info.initialized:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(enc, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(cfg.optim, enc.parameters())
    o = cfg.optim
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps_per_epoch, o.lr_step_epochs, o.lr_gamma))
    scaler = torch.amp.GradScaler(device.type) if r.precision == "fp16" else None
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        rngs = state.get("rng") or []
        if len(rngs) == info.world_size:
            restore_rng(rngs[info.rank])
        else:
            log.warning("checkpoint has RNG states of %d rank(s), this run has %d: global RNGs not restored "
                        "(training draws do not use them, but the run may not be bit-identical)",
                        len(rngs), info.world_size)

    loader_it = None
    if dataset is not None:
        loader = DataLoader(dataset, batch_sampler=StepBatchSampler(stream, batch, start, r.max_steps),
                            num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
                            persistent_workers=False)
        loader_it = iter(loader)

    scalars_log = ScalarLog(out_dir / "logs", start) if info.is_main else None
    pbar = None
    if info.is_main and r.progress:
        from tqdm.auto import tqdm

        pbar = tqdm(total=r.max_steps, initial=start, unit="it", dynamic_ncols=True, desc=f"train {task_name}")

    result = TrainResult(step=start, out_dir=out_dir, checkpoint=resume_path)
    amp = _autocast(device, r.precision)
    enc.train()
    try:
        for step in range(start, r.max_steps):
            real = next(loader_it) if loader_it is not None else None
            g = torch.Generator().manual_seed(mix_seed(r.seed, 1, info.rank, step))
            optimizer.zero_grad(set_to_none=True)
            with amp:
                total, terms, visuals = task.compute(model, real, step, g)
            if scaler is not None:
                scaler.scale(total).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                total.backward()
                optimizer.step()
            scheduler.step()
            if info.initialized:
                _broadcast_buffers(enc)
            done = step + 1
            result.step = done
            epoch = step // steps_per_epoch

            if done % r.log_every == 0 or done == r.max_steps:
                keys = list(terms)
                vals = distributed.all_mean(torch.stack([terms[k].detach().float() for k in keys]), info)
                scalars = {k: float(v) for k, v in zip(keys, vals.cpu())}
                scalars["lr"] = optimizer.param_groups[0]["lr"]
                result.scalars = scalars
                bad = [k for k, v in scalars.items() if not np.isfinite(v)]
                if bad:
                    raise FloatingPointError(f"step {done}: non-finite loss term(s) {', '.join(bad)} "
                                             f"({scalars}); lower optim.lr or use run.precision fp32")
                if scalars_log is not None:
                    scalars_log.log(done, epoch, scalars)
                if pbar is not None:
                    pbar.set_postfix(loss=f"{scalars['total']:.4f}", refresh=False)
            if info.is_main and r.sample_every and done % r.sample_every == 0:
                save_sample_grid(visuals, out_dir / "samples" / f"step_{done:08d}.png")
            if done % r.checkpoint_every == 0 or done == r.max_steps:
                result.checkpoint = _save_checkpoint(task_name, cfg, done, enc, optimizer, scheduler, scaler,
                                                     batch, info, ckpt_dir)
            if pbar is not None:
                pbar.update(1)
        result.replica_digests = distributed.gather_objects(state_digest(enc), info)
        if info.is_main and info.world_size > 1:
            import json

            (out_dir / "logs").mkdir(parents=True, exist_ok=True)
            (out_dir / "logs" / "replicas.json").write_text(json.dumps(
                {"step": result.step, "world_size": info.world_size, "sha256": result.replica_digests}, indent=1))
        if len(set(result.replica_digests)) > 1:
            raise RuntimeError(f"the encoder weights differ between ranks after step {result.step}: "
                               f"{result.replica_digests}")
        if result.step >= r.max_steps and r.export_on_finish and info.is_main:
            result.export = task.export(out_dir / "export")
        distributed.barrier(info)
    finally:
        if pbar is not None:
            pbar.close()
        if scalars_log is not None:
            scalars_log.close()
    result.encoder_state = cpu_state_dict(enc)
    return result


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
        atomic_torch_save(state, path)
        atomic_write_text(ckpt_dir / "latest", path.name + "\n")
        prune_checkpoints(ckpt_dir, cfg.run.keep_checkpoints)
    distributed.barrier(info)
    return path
