"""Training vidinv's encoders: the Feature-Style encoder (Yao et al., ECCV 2022) and pSp (Richardson et
al., CVPR 2021), on real aligned faces (and, for the Feature-Style encoder, synthetic StyleGAN2 samples).

Entry points: ``python -m vidinv.training fs|psp --config FILE`` or ``vidinv train fs|psp`` (:mod:`training.cli`),
and in Python::

    from vidinv.training import load_config, train
    cfg = load_config("fs", "my_fs.yaml")          # official defaults + the file's keys
    result = train(cfg)                            # or train(cfg, resume=True)

Modules: :mod:`~training.config` (schema, YAML/JSON loading), :mod:`~training.runner` (the loop,
checkpoints, resume), :mod:`~training.fs_task` / :mod:`~training.psp_task` (networks and losses of one
step), :mod:`~training.losses`, :mod:`~training.ranger` (optimiser), :mod:`~training.data` (images,
sharded resumable streams), :mod:`~training.video_faces` (faces aligned from videos),
:mod:`~training.degrade` (pSp super-resolution input), :mod:`~training.networks` (encoder builders,
weight files), :mod:`~training.state` (checkpoint files), :mod:`~training.records` (logs, sample
grids), :mod:`~training.distributed` (torchrun), :mod:`~training.export` (official layouts, the user's names
and licence label).
"""
from vidinv.training.config import (
    ConfigError,
    FSTrainConfig,
    PSPTrainConfig,
    config_from_dict,
    default_config,
    load_config,
)
from vidinv.training.runner import TrainResult, train

__all__ = ["ConfigError", "FSTrainConfig", "PSPTrainConfig", "config_from_dict", "default_config", "load_config",
    "TrainResult", "train"]
