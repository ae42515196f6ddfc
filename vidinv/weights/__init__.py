"""Official weight files: registry, cache, downloader and resolver.

Typical use, before any video work::

    from vidinv.weights import resolve, MissingWeightsError
    paths = resolve(["143_enc.pth", "psp_ffhq_encode.pt", "79999_iter.pth"], weights_dir=opts.weights_dir)
    # -> {"143_enc.pth": Path(...), ...}; raises MissingWeightsError listing every missing file,
    #    its download URL and the exact path to put it at.

Modules, each importing only those before it: :mod:`~vidinv.weights.registry` (the table of files),
:mod:`~vidinv.weights.cache` (where they live and how one is checked), :mod:`~vidinv.weights.fetch`
(resumable download, Google Drive through gdown, mirrors via ``$VIDINV_MIRROR``; its
:func:`~vidinv.weights.fetch.fetch` is re-exported here as ``fetch_file`` so that ``vidinv.weights.fetch``
remains the module) and :mod:`~vidinv.weights.resolver` (:func:`resolve`: ``--weights-dir``, then the
cache, then a download; the errors naming what is missing).
"""
from vidinv.weights.cache import (
    ENV_HOME,
    VerifyReport,
    cache_path,
    candidate_paths,
    locate,
    verify,
    vidinv_home,
)
from vidinv.weights.fetch import (
    ENV_MIRROR,
    ChecksumError,
    DownloadInterrupted,
    FetchError,
    StructureError,
    fetch_many,
)
from vidinv.weights.fetch import fetch as fetch_file  # `vidinv.weights.fetch` stays the module
from vidinv.weights.registry import (
    USES,
    UnknownWeightError,
    WeightFile,
    all_files,
    expand_names,
    files_for,
    get,
    names,
    register,
    registered,
    unregister,
)
from vidinv.weights.resolver import (
    ENV_ALLOW_HASH_MISMATCH,
    MissingFile,
    MissingWeightsError,
    WeightHashMismatchError,
    resolve,
    status,
)

__all__ = [
    "ENV_HOME", "ENV_MIRROR", "ENV_ALLOW_HASH_MISMATCH", "USES",
    "WeightFile", "UnknownWeightError", "MissingFile", "MissingWeightsError", "WeightHashMismatchError",
    "VerifyReport",
    "FetchError", "DownloadInterrupted", "ChecksumError", "StructureError",
    "get", "all_files", "names", "files_for", "expand_names", "register", "unregister", "registered",
    "vidinv_home", "cache_path", "candidate_paths", "locate", "status", "verify",
    "resolve", "fetch_file", "fetch_many",
]
