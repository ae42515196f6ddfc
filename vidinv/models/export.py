"""Compiled back-ends of the StyleGAN2 generator: an ONNX export run by ONNX Runtime or OpenVINO (CPU).

The pipeline calls the generator in three ways: :meth:`~vidinv.models.stylegan2.Generator.coarse` (layers
``1..K``, ``G^K(w)``), :meth:`~vidinv.models.stylegan2.Generator.fine` (layers ``K+1..``, from a feature
code at ``K``) and :meth:`~vidinv.models.stylegan2.Generator.synthesis` (a full pass, with or without a
feature code; ``K = 5`` for the Feature-Style encoder). :func:`export_generator` writes these two pieces
as two ONNX graphs (batch 1, float32, the checkpoint's constant noise baked in) and :class:`OnnxBackend`
runs them with ONNX Runtime (``onnx``) or OpenVINO (``openvino``, float32 inference precision); :func:`attach_backend`
hangs it on a generator (``G.backend``), after which ``coarse`` / ``fine`` / ``synthesis`` run through that
runtime whenever the call fits what was exported:

* constant noise (``noise="const"`` or the generator's own noise buffers), the exported ``K``;
* float32 on the CPU, no autograd through the call (grad mode off or no input needing a gradient);
* the generator's weights unchanged since the export (every parameter and buffer keeps the storage and
  version counter it had: pivotal tuning, training steps, ``load_state_dict`` or ``.to()`` all change
  them), and no ``return_features``.

Every other call runs the eager PyTorch code, so the back-end never changes what a call means; a
batch of B samples runs as B batch-1 calls (the compiled graphs are batch 1, the case they target).

The export is cached under a folder the caller gives (``$VIDINV_HOME/onnx/`` for the CLI and jobs), in a
sub-folder named by a sha256 of the generator's tensors (names, shapes and contents: the same weights file
gives the same key) and of the export settings (:data:`EXPORT_VERSION`, ``K``, the opset, the torch
version), so the export (6–35 s at 1024 here, with the cores quiet or busy) is paid once per weights file;
creating the ONNX Runtime sessions (about 1 s) is paid once per process. :func:`build_backend` prints that
first-call cost as one line on stderr.

Both runtimes are optional (``pip install 'vidinv[onnx]'`` / ``'vidinv[openvino]'``); :func:`require_onnx`
raises :class:`BackendUnavailable` naming the extra.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vidinv.io.outputs import atomic_path, atomic_write_text
from vidinv.models.fs_encoder import FS_FEATURE_LAYER
from vidinv.models.stylegan2 import CoarseState, Generator

__all__ = [
    "BACKENDS", "RUNTIMES", "EXPORT_VERSION", "OPSET", "TIMING_FILE", "BackendUnavailable", "require_onnx",
    "onnx_available",
    "weights_key", "export_generator", "OnnxBackend", "build_backend", "attach_backend",
    "choose_backend", "measure_backend",
]

#: ``--backend`` values: ``eager`` (PyTorch), ``onnx`` (ONNX Runtime), ``openvino`` (OpenVINO), ``auto`` (see
#: :func:`choose_backend`).
BACKENDS = ("eager", "onnx", "openvino", "auto")
#: The compiled back-ends: name -> (the packages it needs, the pip extra that installs them).
RUNTIMES = {"onnx": (("onnx", "onnxscript", "onnxruntime"), "vidinv[onnx]"),
            "openvino": (("onnx", "onnxscript", "openvino"), "vidinv[openvino]")}
#: Bumped whenever the exported graphs change meaning; part of the cache key.
EXPORT_VERSION = 1
#: ONNX opset of the export.
OPSET = 17
#: Name of the timing record :func:`measure_backend` writes next to an export (read by ``auto``).
TIMING_FILE = "timing.json"



class BackendUnavailable(RuntimeError):
    """The requested back-end cannot be used here (package missing, or not a CPU float32 generator)."""


def onnx_available(runtime: str = "onnx") -> bool:
    """True when the packages of the compiled back-end ``runtime`` (:data:`RUNTIMES`) can be imported."""
    return all(importlib.util.find_spec(m) is not None for m in RUNTIMES[runtime][0])


def require_onnx(runtime: str = "onnx") -> None:
    """Raise :class:`BackendUnavailable` naming ``pip install 'vidinv[<extra>]'`` when a package of the compiled
    back-end ``runtime`` (``"onnx"`` or ``"openvino"``) is missing."""
    packages, extra = RUNTIMES[runtime]
    missing = [m for m in packages if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailable(f"the {runtime} back-end needs {', '.join(missing)}: pip install '{extra}'")


def weights_key(G: Generator, k: int = FS_FEATURE_LAYER) -> str:
    """sha256 (hex, 24 characters) of the generator's state_dict (names, shapes, dtypes, bytes), its
    architecture and the export settings (``k``, :data:`EXPORT_VERSION`, :data:`OPSET`, torch version)."""
    h = hashlib.sha256()
    h.update(json.dumps({"arch": G.architecture(), "k": int(k), "version": EXPORT_VERSION, "opset": OPSET,
                         "torch": torch.__version__}, sort_keys=True).encode())
    for name, t in G.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:24]


class _Coarse(nn.Module):
    """wp (1, n_latent, D) -> (G^k(w) (1, C, r, r), skip (1, 3, r', r')), constant noise."""

    def __init__(self, G: Generator, k: int):
        super().__init__()
        self.G, self.k = G, k

    def forward(self, wp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        st = self.G._coarse(wp, self.k, self.G.noise_buffers("const"), None)
        return st.feature, st.skip


class _Fine(nn.Module):
    """(x (1, C, r, r) = the activation after layer k, wp, skip) -> image (1, 3, size, size), constant noise."""

    def __init__(self, G: Generator, k: int):
        super().__init__()
        self.G, self.k = G, k

    def forward(self, x: torch.Tensor, wp: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        G = self.G
        _, out = G._run_layers(x, skip, wp, G.noise_buffers("const"), self.k + 1, G.num_layers, None)
        return out.contiguous()


def export_generator(G: Generator, folder: str | os.PathLike, k: int = FS_FEATURE_LAYER) -> tuple[Path, Path]:
    """Write ``coarse.onnx`` and ``fine.onnx`` of ``G`` (batch 1, float32, constant noise) into ``folder``.

    Graphs: ``coarse``: input ``wp`` (1, n_latent, 512) -> ``feature`` (1, C_k, r, r), ``skip`` (1, 3, r', r');
    ``fine``: inputs ``x`` (the activation after layer k, shape of ``feature``), ``wp``, ``skip`` -> ``image``
    (1, 3, size, size). Exported with the TorchScript-based ``torch.onnx.export`` at opset :data:`OPSET`
    from a float32 CPU copy of ``G``.

    Returns:
        The two paths (written atomically: a crash leaves no half file under the final name).

    Raises:
        BackendUnavailable: onnx packages missing.
        ValueError: a bad ``k``.
    """
    require_onnx()
    import copy

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    k = G._check_k(k)
    Gc = copy.deepcopy(G).to(device="cpu", dtype=torch.float32).eval()
    Gc.backend = None
    wp = torch.zeros(1, Gc.n_latent, Gc.style_dim)
    count = Gc.layers_run
    out = []
    with torch.no_grad():
        feat, skip = _Coarse(Gc, k)(wp)
        for name, mod, args, inputs, outputs in (
                ("coarse", _Coarse(Gc, k), (wp,), ["wp"], ["feature", "skip"]),
                ("fine", _Fine(Gc, k), (feat, wp, skip), ["x", "wp", "skip"], ["image"])):
            path = folder / f"{name}.onnx"
            with atomic_path(path) as tmp, warnings.catch_warnings():  # the tracer's notes on shape checks
                warnings.simplefilter("ignore")
                torch.onnx.export(mod, args, str(tmp), input_names=inputs, output_names=outputs,
                                  opset_version=OPSET, dynamo=False, do_constant_folding=True)
            out.append(path)
    Gc.layers_run = count
    return out[0], out[1]


def _state_key(G: Generator) -> tuple:
    return tuple((t.data_ptr(), t._version, t.dtype, t.device.type) for t in [*G.parameters(), *G.buffers()])


class OnnxBackend:
    """ONNX Runtime sessions (or OpenVINO compiled models) of a generator's ``coarse`` / ``fine`` graphs (see the
    module doc).

    Args:
        G: the generator the graphs were exported from (its weights' identity is recorded: once they change,
            every call falls back to the eager code).
        coarse_path, fine_path: from :func:`export_generator`.
        k: the exported feature index.
        threads: the runtime's threads (default: ``torch.get_num_threads()``).
        runtime: ``"onnx"`` (ONNX Runtime, CPU execution provider) or ``"openvino"`` (OpenVINO CPU plug-in,
            ``INFERENCE_PRECISION_HINT`` f32, latency mode).

    The ``coarse`` / ``fine`` / ``synthesis`` methods return None when a call does not fit (the generator
    then runs its eager code); :meth:`Generator.coarse` etc. call them through ``G.backend``.
    """

    def __init__(self, G: Generator, coarse_path: str | os.PathLike, fine_path: str | os.PathLike,
                 k: int = FS_FEATURE_LAYER, threads: int | None = None, runtime: str = "onnx"):
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
        require_onnx(runtime)
        n = int(threads or torch.get_num_threads())
        self.name = runtime
        if runtime == "onnx":
            self.coarse_session, self.fine_session = (_ort_runner(p, n) for p in (coarse_path, fine_path))
        else:
            self.coarse_session, self.fine_session = (_openvino_runner(p, n) for p in (coarse_path, fine_path))
        self.k = int(k)
        self._key = _state_key(G)
        #: set by :func:`build_backend`: the export folder, the export's seconds (None: cached) and the sessions'
        self.folder: Path | None = None
        self.export_s: float | None = None
        self.sessions_s = 0.0

    def __deepcopy__(self, memo):  # sessions are read-only; a copied generator has other weights -> eager
        return self

    def usable(self, G: Generator, noise: Any, tensors: tuple) -> bool:
        """Whether a call with these noise and input tensors can run through the sessions."""
        ref = G._ref()
        if ref.device.type != "cpu" or ref.dtype != torch.float32 or _state_key(G) != self._key:
            return False
        if isinstance(noise, str):
            if noise != "const":
                return False
        else:
            const = G.noise_buffers("const")
            noise = list(noise)
            if len(noise) != len(const) or any(a is not b for a, b in zip(noise, const)):
                return False
        if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors):
            return False
        return True

    @staticmethod
    def _run(session: Callable[[dict[str, np.ndarray]], list[np.ndarray]],
             feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        arrays = {n: np.ascontiguousarray(t.detach().to(torch.float32).numpy()) for n, t in feeds.items()}
        return [torch.from_numpy(a) for a in session(arrays)]

    def coarse(self, G: Generator, wp: torch.Tensor) -> CoarseState:
        """``G.coarse`` for W+ ``wp`` (B, n_latent, D) on the CPU: B batch-1 runs of the coarse graph."""
        feats, skips = [], []
        for i in range(wp.shape[0]):
            f, s = self._run(self.coarse_session, {"wp": wp[i:i + 1]})
            feats.append(f)
            skips.append(s)
        G.layers_run += self.k
        return CoarseState(k=self.k, feature=torch.cat(feats), skip=torch.cat(skips))

    def fine(self, G: Generator, x: torch.Tensor, wp: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Layers ``k+1..`` from the activation ``x`` (B, C, r, r): B batch-1 runs of the fine graph."""
        b = max(x.shape[0], wp.shape[0], skip.shape[0])
        x, wp, skip = x.expand(b, *x.shape[1:]), wp.expand(b, *wp.shape[1:]), skip.expand(b, *skip.shape[1:])
        out = [self._run(self.fine_session, {"x": x[i:i + 1], "wp": wp[i:i + 1], "skip": skip[i:i + 1]})[0]
               for i in range(b)]
        G.layers_run += G.num_layers - self.k
        return torch.cat(out)


def _ort_runner(path: str | os.PathLike, threads: int) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """An ONNX Runtime CPU session of ``path``: ``run(feeds) -> outputs`` (float32 arrays, graph order)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)


def _openvino_runner(path: str | os.PathLike, threads: int) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """An OpenVINO CPU compiled model of ``path`` (float32 inference precision, latency mode, ``threads``
    threads): ``run(feeds) -> outputs`` (float32 arrays, graph order; copies, as the request reuses its buffers)."""
    import openvino as ov

    model = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                        "INFERENCE_PRECISION_HINT": "f32",
                                                        "PERFORMANCE_HINT": "LATENCY"})
    request = model.create_infer_request()
    n_out = len(model.outputs)

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request.infer(feeds)
        return [np.array(request.get_output_tensor(i).data, copy=True) for i in range(n_out)]
    return run


def _log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_backend(G: Generator, k: int = FS_FEATURE_LAYER, *, cache_dir: str | os.PathLike,
                  log: Callable[[str], None] | None = _log_stderr, runtime: str = "onnx") -> OnnxBackend:
    """Export ``G`` (or reuse its cached export) and open the ONNX Runtime sessions (``runtime="openvino"``:
    compile the same graphs with OpenVINO).

    Args:
        G: a float32 CPU generator.
        k: the feature index the pipeline injects at (5 for the Feature-Style encoder).
        cache_dir: where exports live (the CLI uses ``$VIDINV_HOME/onnx``); one sub-folder per :func:`weights_key`.
        log: called once with the first-call cost line (default: print to stderr); None for silence.
        runtime: ``"onnx"`` or ``"openvino"`` (:data:`RUNTIMES`).

    Raises:
        BackendUnavailable: the runtime's packages missing, or ``G`` is not float32 on the CPU.
    """
    require_onnx(runtime)
    ref = G._ref()
    if ref.device.type != "cpu" or ref.dtype != torch.float32:
        raise BackendUnavailable(f"the {runtime} back-end runs float32 generators on the CPU (this one is {ref.dtype} "
                                 f"on {ref.device}); use --backend eager")
    t0 = time.perf_counter()
    folder = Path(cache_dir) / weights_key(G, k)
    coarse, fine = folder / "coarse.onnx", folder / "fine.onnx"
    cached = coarse.is_file() and fine.is_file()
    if not cached:
        coarse, fine = export_generator(G, folder, k)
    t1 = time.perf_counter()
    backend = OnnxBackend(G, coarse, fine, k, runtime=runtime)
    t2 = time.perf_counter()
    backend.folder, backend.export_s, backend.sessions_s = folder, (None if cached else t1 - t0), t2 - t1
    if log is not None:
        how = f"cached export {folder}" if cached else f"export {t1 - t0:.1f} s to {folder}"
        log(f"vidinv: {runtime} back-end ready in {t2 - t0:.1f} s ({how}; sessions {t2 - t1:.1f} s)")
    return backend


def attach_backend(G: Generator, backend: str, *, cache_dir: str | os.PathLike, k: int = FS_FEATURE_LAYER,
                   frames: int | None = None) -> str:
    """Give ``G`` the back-end ``backend`` (``eager`` removes any); returns the one chosen (``auto`` resolved by
    :func:`choose_backend`).

    Raises:
        BackendUnavailable: ``onnx`` / ``openvino`` asked for but unavailable (packages, device or dtype).
        ValueError: an unknown back-end name.
    """
    chosen = choose_backend(G, backend, k=k, frames=frames, cache_dir=cache_dir)
    G.backend = build_backend(G, k, cache_dir=cache_dir, runtime=chosen) if chosen in RUNTIMES else None
    return chosen


def choose_backend(G: Generator, backend: str, *, cache_dir: str | os.PathLike, k: int = FS_FEATURE_LAYER,
                   frames: int | None = None) -> str:
    """Resolve a ``--backend`` value to ``"eager"``, ``"onnx"`` or ``"openvino"``.

    ``auto`` picks a compiled back-end only where it is measured to pay: its packages are installed, ``G`` is
    float32 on the CPU, ``vidinv export onnx`` has exported these weights and recorded its timing on this machine
    (:data:`TIMING_FILE`, :func:`measure_backend`) with that runtime faster than the eager forward, and the clip
    is long enough that the saving pays its start: ``frames * (eager_s - <name>_s) >= <name>_sessions_s``
    (``frames`` None = unknown = eager). Of several that pay, the one saving the most seconds on the clip wins.
    Everything else is ``eager`` (an export is never started by ``auto``: at 1024 it costs seconds to tens of
    seconds).

    Raises:
        ValueError: an unknown name.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown back-end {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    ref = G._ref()
    if frames is None or ref.device.type != "cpu" or ref.dtype != torch.float32:
        return "eager"
    folder = Path(cache_dir) / weights_key(G, k)
    if not ((folder / "coarse.onnx").is_file() and (folder / "fine.onnx").is_file()):
        return "eager"
    try:
        rec = json.loads((folder / TIMING_FILE).read_text())
        eager_s = float(rec["eager_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return "eager"
    best, best_gain = "eager", 0.0
    for name in RUNTIMES:
        try:
            saving = eager_s - float(rec[f"{name}_s"])
            start = float(rec[f"{name}_sessions_s"])
        except (KeyError, ValueError, TypeError):
            continue
        gain = frames * saving - start
        if saving > 0 and gain >= 0 and (best == "eager" or gain > best_gain) and onnx_available(name):
            best, best_gain = name, gain
    return best


def measure_backend(G: Generator, backend: OnnxBackend, folder: str | os.PathLike, *, repeats: int = 2,
                    sessions_s: float = 0.0) -> dict[str, float]:
    """Time one batch-1 ``G.synthesis`` (constant noise) eagerly and through ``backend``, alternating, best of
    ``repeats`` each (wall seconds, after one warm-up each), and write them to ``folder/timing.json``:
    ``eager_s``, ``<name>_s`` and ``<name>_sessions_s`` (the runtime's start, ``sessions_s``) with ``name`` the
    back-end's (``onnx`` / ``openvino``; the other runtime's entries already there are kept when the thread
    count is the same) and ``threads``. Returns the record."""
    w = torch.zeros(1, G.n_latent, G.style_dim)
    timed = f"{backend.name}_s"
    saved, best = G.backend, {"eager_s": math.inf, timed: math.inf}
    count = G.layers_run
    try:
        with torch.inference_mode():
            for _ in range(repeats + 1):
                for name, be in (("eager_s", None), (timed, backend)):
                    G.backend = be
                    t0 = time.perf_counter()
                    G.synthesis(w)
                    best[name] = min(best[name], time.perf_counter() - t0)
    finally:
        G.backend = saved
        G.layers_run = count
    threads = torch.get_num_threads()
    try:
        old = json.loads((Path(folder) / TIMING_FILE).read_text())
    except (OSError, ValueError):
        old = {}
    keep = {k: v for k, v in old.items() if k.endswith("_s") and k != "eager_s"} if old.get("threads") == threads \
        else {}
    rec = {**keep, **best, f"{backend.name}_sessions_s": float(sessions_s), "threads": threads}
    atomic_write_text(Path(folder) / TIMING_FILE, json.dumps(rec, indent=1))
    return rec
