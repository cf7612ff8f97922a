"""The agent executor passes the executor conformance suite on an agent of the session's cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agentbed import Cluster
from nexus_core.plugin import ExecutorContext, Host
from nexus_core.testing.conformance import ExecutorConformance, MakeExecutor


class TestAgentExecutorConformance(ExecutorConformance):
    @pytest.fixture
    def make_executor(
        self, tmp_path: Path, agent_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[MakeExecutor]:
        from nexus_agent.executor import AgentExecutor

        for key, value in agent_cluster.env.items():
            monkeypatch.setenv(key, value)
        made: list[AgentExecutor] = []

        def make() -> AgentExecutor:
            context = ExecutorContext(
                config={"cluster": agent_cluster.address}, root=str(tmp_path), emit=lambda _e: None, run_id="t"
            )
            made.append(AgentExecutor(context))
            return made[-1]

        yield make
        for ex in made:
            ex.close()

    @pytest.fixture
    def host(self) -> Host:
        return Host("a1", transport="agent")

    @pytest.fixture
    def sudo_works(self) -> bool:
        import shutil

        return shutil.which("sudo") is not None
