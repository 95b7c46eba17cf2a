"""What the agent offers: CPUs, memory and GPUs from NVML, nvidia-smi or its config."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest

from ai.backend.agent.clients.gpus import GpuProbeUnavailable, parse_nvidia_smi, probe_nvml
from ai.backend.agent.config import AgentConfig, GpuBackend, ResourcesConfig, load_agent_config
from ai.backend.agent.services.resources import detect_memory, detect_resources

FAKE_SMI_OUTPUT = (
    "0, NVIDIA A100-SXM4-80GB, 81920, GPU-aaaa\n1, NVIDIA A100-SXM4-80GB, 81920, GPU-bbbb\n"
)


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``nvidia-smi`` on PATH that prints two A100s for the agent's query."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--query-gpu=index,name,memory.total,uuid*) ;; *) exit 9;; esac\n'
        f"printf '{FAKE_SMI_OUTPUT}'\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    return script


@pytest.fixture
def without_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError


def test_mock_gpus_need_only_model_and_memory(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        '[resources]\ngpu_backend = "mock"\n'
        '[[resources.mock_gpus]]\nmodel = "A100-80G"\nmemory = "80g"\n'
        '[[resources.mock_gpus]]\nmodel = "A100-80G"\nmemory = "80g"\n'
    )
    config = load_agent_config(config_file).config
    assert [(g.id, g.model, g.memory) for g in config.resources.mock_gpus] == [
        ("0", "A100-80G", 80 * 1024**3),
        ("1", "A100-80G", 80 * 1024**3),
    ]


def test_duplicate_mock_gpu_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate device ids 7"):
        ResourcesConfig.model_validate({"mock_gpus": [{"id": "7"}, {"id": "7"}]})


async def test_mock_gpus_offer_one_device_and_one_share_each() -> None:
    config = ResourcesConfig.model_validate(
        {
            "cpu": 4,
            "mem": "8g",
            "gpu_backend": "mock",
            "mock_gpus": [{"model": "A100-80G", "memory": "80g"}] * 3,
        }
    )
    resources = await detect_resources(config)
    assert resources.slots_total.to_json() == {
        "cpu": "4",
        "mem": str(8 * 1024**3),
        "cuda.device": "3",
        "cuda.shares": "3",
    }
    assert [d.id for d in resources.devices] == ["0", "1", "2"]


async def test_without_gpus_the_cuda_slots_are_left_out() -> None:
    resources = await detect_resources(ResourcesConfig(gpu_backend=GpuBackend.NONE))
    assert set(resources.slots_total) == {"cpu", "mem"}
    assert resources.slots_total.amount("cpu") >= 1
    assert resources.slots_total.amount("mem") == Decimal(detect_memory())


def test_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16318480 kB\nMemFree:         1 kB\n")
    assert detect_memory(meminfo) == 16318480 * 1024


def test_nvml_absent_is_reported_as_unavailable(without_nvml: None) -> None:
    with pytest.raises(GpuProbeUnavailable, match="nvidia-ml-py"):
        probe_nvml()


async def test_auto_falls_back_to_nvidia_smi(fake_nvidia_smi: Path, without_nvml: None) -> None:
    resources = await detect_resources(ResourcesConfig(gpu_backend=GpuBackend.AUTO))
    assert [(d.id, d.model, d.memory, d.uuid) for d in resources.devices] == [
        ("0", "NVIDIA A100-SXM4-80GB", 80 * 1024**3, "GPU-aaaa"),
        ("1", "NVIDIA A100-SXM4-80GB", 80 * 1024**3, "GPU-bbbb"),
    ]
    assert resources.slots_total.amount("cuda.device") == 2


async def test_auto_without_nvml_or_nvidia_smi_offers_no_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, without_nvml: None
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    resources = await detect_resources(ResourcesConfig(gpu_backend=GpuBackend.AUTO))
    assert resources.devices == []
    assert "cuda.device" not in resources.slots_total


async def test_explicit_nvidia_smi_that_fails_is_an_error(
    fake_nvidia_smi: Path, without_nvml: None
) -> None:
    fake_nvidia_smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 6\n")
    with pytest.raises(GpuProbeUnavailable, match="status 6: NVIDIA-SMI has failed"):
        await detect_resources(ResourcesConfig(gpu_backend=GpuBackend.NVIDIA_SMI))


def test_malformed_nvidia_smi_row_is_named() -> None:
    with pytest.raises(ValueError, match="expected 4 fields"):
        parse_nvidia_smi("0, A100, 81920\n")


def test_manager_secret_key_is_masked_in_config_show(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text('[manager]\naccess_key = "AKTEST"\nsecret_key = "very-secret"\n')
    loaded = load_agent_config(config_file)
    shown = {entry.key: entry.value for entry in loaded.entries()}
    assert (shown["manager.access_key"], shown["manager.secret_key"]) == ("AKTEST", "********")
    assert isinstance(loaded.config, AgentConfig)
