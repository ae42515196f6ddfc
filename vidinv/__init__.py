"""vidinv: edit faces in real videos through StyleGAN2 inversion.

Sub-packages: :mod:`vidinv.models` (StyleGAN2, Feature-Style encoder, pSp, ArcFace, IR-SE50,
BiSeNet), :mod:`vidinv.weights` (registry, cache and download of official files),
:mod:`vidinv.io.checkpoints` (reading official checkpoint files strictly).

Importing :mod:`vidinv` sets ``THP_MEM_ALLOC_ENABLE=1`` in the environment unless it is already set: PyTorch
(>= 2.2) then backs every CPU buffer of 2 MiB or more with transparent huge pages (page-aligned,
``madvise(MADV_HUGEPAGE)``). The generator's high-resolution activations (e.g. 32 x 1024 x 1024 float32 = 128 MiB)
are fresh buffers on every call, and faulting them in 4 KiB pages cost 0.3-0.45 s of kernel time per 1024
forward on this project's CPU (about a fifth of it); with huge pages 0.1-0.2 s. PyTorch reads the variable once,
at its first CPU allocation, so it only takes effect when :mod:`vidinv` is imported before any tensor is made
(the ``vidinv`` command always does); ``THP_MEM_ALLOC_ENABLE=0`` turns it off. It has no effect where the
kernel's transparent huge pages are ``never`` (``/sys/kernel/mm/transparent_hugepage/enabled``).
"""
import os as _os

_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
