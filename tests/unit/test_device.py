"""GPU choice on a machine with several GPUs, with faked device lists (no GPU here): each
process claims a free GPU under a lock, so parallel runs do not all land on cuda:0."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from audiotag.core import device


@pytest.fixture
def gpus(monkeypatch, tmp_path):
    """A machine whose torch sees ``n`` CUDA devices; lock files under ``tmp_path``."""
    chosen = []

    def fake(n: int, visible: str | None = None) -> list[int]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        return chosen

    monkeypatch.setenv(device.GPU_LOCKS_ENV, str(tmp_path))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(device, "_claimed", None)
    return fake


def _hold(lock_dir, name: str) -> subprocess.Popen:
    """Another process holding GPU ``name``'s lock until it is killed."""
    code = textwrap.dedent(f"""
        import fcntl, sys, time
        handle = open({str(lock_dir / f"gpu-{name}.lock")!r}, "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_one_gpu_is_cuda_0_without_a_lock(gpus, tmp_path):
    gpus(1)
    assert device.pick_device("cuda") == torch.device("cuda", 0)
    assert list(tmp_path.iterdir()) == []


def test_a_process_takes_the_first_gpu_no_other_holds(gpus, tmp_path):
    chosen = gpus(3, visible="4,5,6")  # lock files are named by the machine's GPU numbers
    holder = _hold(tmp_path, "4")
    try:
        assert device.pick_device("cuda") == torch.device("cuda", 1)
        assert device.pick_device("auto") == torch.device("cuda", 1)  # once per process
    finally:
        holder.kill()
        holder.wait()
    assert chosen == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-4.lock", "gpu-5.lock"]


def test_a_second_process_gets_another_gpu(gpus, tmp_path):
    gpus(2)
    assert device.claim_gpu() == 0
    # a process started now (a second queue worker) finds GPU 0 held and takes GPU 1
    code = ("import torch; torch.cuda.device_count = lambda: 2; "
            "torch.cuda.set_device = lambda i: None; "
            "from audiotag.core.device import claim_gpu; print(claim_gpu())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
    assert other.stdout.strip() == "1"


def test_every_gpu_held_shares_them(gpus, tmp_path):
    gpus(2, visible="GPU-aaa,GPU-bbb")
    holders = [_hold(tmp_path, "GPU-aaa"), _hold(tmp_path, "GPU-bbb")]
    try:
        index = device.claim_gpu()
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    assert index in (0, 1)


def test_torchrun_ranks_keep_their_own_gpu(gpus, monkeypatch, tmp_path):
    gpus(4)
    monkeypatch.setenv("LOCAL_RANK", "2")  # distributed.setup maps it to cuda:2
    assert device.pick_device("cuda") == torch.device("cuda")
    assert list(tmp_path.iterdir()) == []


def test_no_gpu_asked_for_is_an_error_and_auto_falls_back(gpus):
    gpus(0)
    with pytest.raises(RuntimeError, match="train.device is 'cuda'"):
        device.pick_device("cuda")
    assert device.pick_device("cpu") == torch.device("cpu")


def test_the_platform_record_names_no_gpu_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: "NVIDIA H100")
    record = device.platform_record(torch.device("cuda", 1))
    assert record["device"] == "cuda (NVIDIA H100)"
    assert device.platform_record(torch.device("cpu"))["device"] == "cpu"


def test_a_new_lock_folder_is_shared_by_every_user(gpus, monkeypatch, tmp_path):
    """World-writable and sticky, like /tmp: every user's runs on the machine lock there."""
    fresh = tmp_path / "fresh"
    monkeypatch.setenv(device.GPU_LOCKS_ENV, str(fresh))
    gpus(2)
    assert device.claim_gpu() == 0
    assert fresh.stat().st_mode & 0o7777 == 0o1777
