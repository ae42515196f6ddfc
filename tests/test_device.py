"""The one device / precision resolver (vidinv/device.py), as the inference jobs and training use it."""
from __future__ import annotations

import contextlib
import logging

import pytest
import torch

from vidinv.device import (
    DeviceUnavailableError,
    Runtime,
    autocast,
    effective_precision,
    precision_dtype,
    resolve_device,
)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine that says it has CUDA (only torch.device objects are made; nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)


def test_cpu_and_auto_without_cuda(no_cuda):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("auto", local_rank=3) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_refused_for_jobs_and_training(no_cuda, spec):
    with pytest.raises(ValueError, match=rf"--device {spec} was asked for but CUDA is not available"):
        resolve_device(spec)
    with pytest.raises(RuntimeError, match=rf"run.device {spec} was asked for but CUDA is not available"):
        resolve_device(spec, local_rank=0, option="run.device")
    assert issubclass(DeviceUnavailableError, ValueError) and issubclass(DeviceUnavailableError, RuntimeError)
    with pytest.raises(ValueError, match="CUDA is not available"):
        Runtime(spec)


def test_inference_jobs_keep_the_name(fake_cuda):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")


def test_training_places_each_rank_on_its_gpu(fake_cuda, monkeypatch):
    # single process (no LOCAL_RANK): auto / cuda -> cuda:<local_rank>, cuda:N kept
    assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("cuda:1", local_rank=0) == torch.device("cuda", 1)
    assert resolve_device("cpu", local_rank=0) == torch.device("cpu")
    # under torchrun every CUDA spec means cuda:LOCAL_RANK
    monkeypatch.setenv("LOCAL_RANK", "2")
    for spec in ("auto", "cuda", "cuda:0", "cuda:1"):
        assert resolve_device(spec, local_rank=2) == torch.device("cuda", 2), spec
    assert resolve_device("cpu", local_rank=2) == torch.device("cpu")


def test_precisions():
    assert precision_dtype("fp32") is None
    assert precision_dtype("fp16") is torch.float16 and precision_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, bf16, got 'fp8'"):
        precision_dtype("fp8")
    with pytest.raises(ValueError, match="precision must be one of"):
        Runtime("cpu", "half")


def test_cpu_fallback_warns_for_jobs_but_not_for_training(caplog):
    cpu = torch.device("cpu")
    caplog.set_level(logging.WARNING)
    assert effective_precision("bf16", cpu) == "fp32"
    assert [r.message for r in caplog.records] == ["precision bf16 needs CUDA; running in fp32 on cpu"]
    caplog.clear()
    assert effective_precision("bf16", cpu, cpu_autocast=True) == "bf16"
    assert effective_precision("fp16", torch.device("cuda")) == "fp16"
    assert not caplog.records
    rt = Runtime("cpu", "fp16")
    assert rt.precision == "fp32" and rt.autocast_dtype is None and rt.describe() == "cpu fp32"
    assert isinstance(rt.autocast(), contextlib.nullcontext)


def test_autocast_on_the_devices_type():
    cpu = torch.device("cpu")
    assert isinstance(autocast(cpu, "fp32"), contextlib.nullcontext)
    amp = autocast(cpu, "bf16")  # training autocasts on the CPU too
    for _ in range(2):  # the runner enters the same object once per step
        with amp:
            y = torch.ones(4, 4) @ torch.ones(4, 4)
        assert y.dtype == torch.bfloat16
    assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_is_device_name_spelling_only():
    from vidinv.device import is_device_name

    assert all(is_device_name(s) for s in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"))
    assert not any(is_device_name(s) for s in ("gpu", "cuda:", "cuda:x", "CUDA", "", None, 0, "cuda:-1"))


def _thp_mode() -> str | None:
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return None
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else None


_HUGE_PAGE_PROBE = """
import os
import vidinv, torch
x = torch.ones(16 << 20)  # 64 MiB, touched
rollup = open("/proc/self/smaps_rollup").read()
huge = [int(line.split()[1]) for line in rollup.splitlines() if line.startswith("AnonHugePages:")][0]
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), x.data_ptr() % 4096, huge)
"""


@pytest.mark.parametrize("env", [None, "0"])
def test_importing_vidinv_backs_large_cpu_tensors_with_huge_pages(env):
    """vidinv's import sets THP_MEM_ALLOC_ENABLE=1 (unless set): a 64 MiB tensor made afterwards is page-aligned
    and backed by transparent huge pages; the user's ``THP_MEM_ALLOC_ENABLE=0`` is kept (4 KiB pages)."""
    import os
    import subprocess
    import sys

    if _thp_mode() not in ("always", "madvise"):
        pytest.skip("this kernel has no transparent huge pages for madvise (enabled: never or absent)")
    environ = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if env is not None:
        environ["THP_MEM_ALLOC_ENABLE"] = env
    out = subprocess.run([sys.executable, "-c", _HUGE_PAGE_PROBE], env=environ, capture_output=True, text=True,
                         check=True).stdout.split()
    flag, offset, huge_kib = out[0], int(out[1]), int(out[2])
    if env is None:
        assert flag == "1" and offset == 0
        assert huge_kib >= 32 << 10, f"only {huge_kib} KiB in huge pages"
    elif _thp_mode() == "madvise":
        assert flag == "0" and huge_kib < 32 << 10
