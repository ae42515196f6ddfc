"""vidinv: edit faces in real videos through StyleGAN2 inversion.

Sub-packages: :mod:`vidinv.models` (StyleGAN2, Feature-Style encoder, pSp, ArcFace, IR-SE50,
BiSeNet), :mod:`vidinv.weights` (registry, cache and download of official files),
:mod:`vidinv.io.checkpoints` (reading official checkpoint files strictly).
"""
__version__ = "0.1.0"
