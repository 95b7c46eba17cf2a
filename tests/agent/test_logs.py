"""``./backend.ai ag logs REPLICA`` prints the replica's log files."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ai.backend.agent.cli import main


@pytest.fixture
def agent_config(tmp_path: Path) -> Path:
    state_dir = tmp_path / "state"
    replica = state_dir / "replicas" / "0f3c9a7e-replica"
    replica.mkdir(parents=True)
    (replica / "runtime.log").write_text("runtime line 1\nruntime line 2\n")
    (replica / "sidecar.log").write_text("sidecar line\n")
    (state_dir / "replicas" / "1abc-other").mkdir()
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nstate_dir = "{state_dir}"\n')
    return config


def test_logs_prints_runtime_then_sidecar(agent_config: Path) -> None:
    result = CliRunner().invoke(main, ["logs", "0f3c9a7e-replica", "--config", str(agent_config)])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "==> runtime.log <==\nruntime line 1\nruntime line 2\n==> sidecar.log <==\nsidecar line\n"
    )


def test_logs_of_one_process_by_id_prefix(agent_config: Path) -> None:
    result = CliRunner().invoke(main, ["logs", "0f3c", "--sidecar", "--config", str(agent_config)])
    assert (result.exit_code, result.output) == (0, "sidecar line\n")


def test_logs_of_an_unknown_replica_fail(agent_config: Path) -> None:
    result = CliRunner().invoke(main, ["logs", "nope", "--config", str(agent_config)])
    assert result.exit_code == 1
    assert "no replica 'nope'" in result.output


def test_logs_of_a_replica_without_logs_fail(agent_config: Path) -> None:
    result = CliRunner().invoke(main, ["logs", "1abc", "--runtime", "--config", str(agent_config)])
    assert result.exit_code == 1
    assert "has no runtime log" in result.output
