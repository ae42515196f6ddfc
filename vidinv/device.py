"""The one device and precision resolver of vidinv (inference jobs and training alike).

* :func:`resolve_device` turns a device name (``auto`` / ``cpu`` / ``cuda`` / ``cuda:N``) into a
  :class:`torch.device`; under ``torchrun`` (``LOCAL_RANK`` set) a CUDA process uses ``cuda:LOCAL_RANK``.
* :data:`PRECISIONS` / :func:`precision_dtype` name the precisions: ``fp32`` (no autocast), ``fp16`` and
  ``bf16`` (:func:`torch.autocast` to that dtype).
* :func:`autocast` is the autocast context of a device and precision.
* :class:`Runtime` is the device and precision of a ``vidinv edit`` / ``vidinv invert`` job: there,
  fp16 / bf16 run on CUDA only; on the CPU they fall back to fp32 with a WARNING
  (:func:`effective_precision`). Training keeps CPU autocast (``cpu_autocast=True``).
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)

__all__ = ["PRECISIONS", "DeviceUnavailableError", "is_device_name", "resolve_device", "precision_dtype",
           "effective_precision", "autocast", "Runtime"]

#: Precision names and their autocast dtypes (``fp32``: float32, i.e. no autocast).
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class DeviceUnavailableError(ValueError, RuntimeError):
    """CUDA was asked for on a machine without CUDA. Both a ValueError (what the inference options have
    always raised) and a RuntimeError (what training has always raised)."""


def is_device_name(spec: object) -> bool:
    """Whether ``spec`` is a device name vidinv's options accept: ``"auto"``, ``"cpu"``, ``"cuda"`` or
    ``"cuda:N"`` (N a non-negative integer). Checks the spelling only (no CUDA query); see
    :func:`resolve_device`."""
    if not isinstance(spec, str):
        return False
    if spec in ("auto", "cpu", "cuda"):
        return True
    return spec.startswith("cuda:") and spec[5:].isdigit()


def resolve_device(spec: str = "auto", *, local_rank: int | None = None, option: str = "--device") -> torch.device:
    """Resolve a device name.

    Args:
        spec: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (any other
            name is passed to :class:`torch.device`).
        local_rank: this process's local rank when it places itself on a GPU of its node (training:
            ``LOCAL_RANK`` of ``torchrun``, 0 in a single process). Then ``auto`` (on a CUDA machine) and
            ``cuda`` mean ``cuda:<local_rank>``, and so does ``cuda:N`` when ``LOCAL_RANK`` is set (every
            rank its own GPU). None (inference jobs): ``auto`` and ``cuda`` mean ``cuda``, ``cuda:N`` is kept.
        option: how the caller's users name the setting, for the error message (``--device``, ``run.device``).

    Returns:
        The :class:`torch.device`.

    Raises:
        DeviceUnavailableError: a CUDA device was asked for and CUDA is not available.
        RuntimeError: a name :class:`torch.device` does not know.
    """
    name = str(spec)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(f"{option} {spec} was asked for but CUDA is not available here; use "
                                         f"{option} cpu or auto")
        if local_rank is not None and (name == "cuda" or "LOCAL_RANK" in os.environ):
            return torch.device("cuda", int(local_rank))
    return torch.device(name)


def precision_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision name: None for ``fp32``, float16 / bfloat16 for ``fp16`` / ``bf16``.

    Raises:
        ValueError: an unknown name.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return None if precision == "fp32" else PRECISIONS[precision]


def effective_precision(precision: str, device: torch.device, *, cpu_autocast: bool = False) -> str:
    """The precision a job runs at on ``device``: ``precision`` itself, except that without
    ``cpu_autocast`` fp16 / bf16 need CUDA and become ``fp32`` elsewhere (with a WARNING).

    Raises:
        ValueError: an unknown precision name.
    """
    precision_dtype(precision)
    if device.type != "cuda" and precision != "fp32" and not cpu_autocast:
        log.warning("precision %s needs CUDA; running in fp32 on %s", precision, device)
        return "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """Context manager: :func:`torch.autocast` on ``device.type`` to the precision's dtype, or a no-op for
    ``fp32``. The returned object may be entered again after it was left.

    Raises:
        ValueError: an unknown precision name.
    """
    dtype = precision_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class Runtime:
    """Device and precision of an inference job (``vidinv edit`` / ``vidinv invert``).

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``
            (:func:`resolve_device`).
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``: autocast on CUDA only; on another device
            fp16 / bf16 become fp32 with a WARNING (:func:`effective_precision`). ``fp32`` on CUDA turns
            TF32 off for cuDNN convolutions and matmuls (process-wide), so fp32 results are true fp32.

    Attributes:
        torch_device: the resolved :class:`torch.device`.

    Raises:
        ValueError: unknown precision, or CUDA asked for on a machine without CUDA
            (:class:`DeviceUnavailableError`).
    """

    device: str = "auto"
    precision: str = "fp32"
    torch_device: torch.device = field(init=False)

    def __post_init__(self):
        precision_dtype(self.precision)
        self.torch_device = resolve_device(self.device)
        self.precision = effective_precision(self.precision, self.torch_device)
        if self.torch_device.type == "cuda" and self.precision == "fp32":
            # fp32 means fp32: PyTorch lets cuDNN convolutions use TF32 (10-bit mantissa) by default on
            # Ampere and newer, which breaks the parity tolerances (rtol 1e-4); switch it off for the process
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for fp32."""
        return precision_dtype(self.precision)

    def autocast(self):
        """Context manager: :func:`torch.autocast` on CUDA for fp16/bf16, else a no-op."""
        return autocast(self.torch_device, self.precision)

    def describe(self) -> str:
        """``"<device> <precision>"``, e.g. ``"cuda fp16"``."""
        return f"{self.torch_device} {self.precision}"
