"""Records (nexus_core.records): the cheap stand-in for frozen dataclasses keeps their behaviour."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from nexus_core.kinds import Registration
from nexus_core.model import Location, Problem, SourceSpec
from nexus_core.options import Option


def test_a_record_compares_hashes_and_prints_as_a_frozen_dataclass_would() -> None:
    a, b = Location("/p/nexusfile.py", 3), Location("/p/nexusfile.py", line=3)
    assert a == b and hash(a) == hash(b) and a != Location("/p/nexusfile.py", 4)
    assert Location("x") == Location("x", 0) and Location("x") != Problem("x")
    assert {a: 1}[b] == 1
    assert repr(Problem("bad", a, code="c")) == (
        "Problem(message='bad', location=Location(path='/p/nexusfile.py', line=3), hint='', code='c')"
    )
    assert str(a) == "nexusfile.py:3"  # its own __str__ is kept


def test_a_record_is_immutable() -> None:
    reg = Registration("ssh", "nexus_ssh.executor:SshExecutor")
    with pytest.raises(dataclasses.FrozenInstanceError):
        reg.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del reg.target  # type: ignore[misc]
    assert reg.module == "nexus_ssh.executor" and dict(reg.details) == {}


def test_a_record_survives_copy_and_pickle() -> None:
    opt = Option("parallel_limit", (int,), 10, "tasks at once", minimum=1)
    spec = SourceSpec("tailscale", {"tags": ["web"]}, Location("f.py", 2))
    assert spec.key  # the cached key is not part of what is copied
    for value in (opt, spec, Location("f.py", 1), Registration("x", "m:C", {"order": 1})):
        assert pickle.loads(pickle.dumps(value)) == value
        assert copy.copy(value) == value and copy.deepcopy(value) == value
    assert SourceSpec("tailscale", {"tags": ["web"]}) == spec  # one discovery: same source and filters
