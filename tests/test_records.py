"""Records (nexus_core.records): the cheap stand-in for frozen dataclasses keeps their behaviour."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from dataclasses import field
from typing import Any, ClassVar

import pytest

from nexus_core import events
from nexus_core.api import CommandResult
from nexus_core.clouds import events as cloud_events
from nexus_core.events import Event, event_type
from nexus_core.kinds import Registration
from nexus_core.model import Command, Host, HostGroup, Location, Problem, SourceSpec, TaskDef, Transfer
from nexus_core.options import Option
from nexus_core.plan import HostPlan, Plan, TaskPlan
from nexus_core.policy import events as policy_events
from nexus_core.records import _frozen_init


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


def _shape(init: Any) -> list[tuple[str, Any, Any]]:
    """Each parameter's name, kind and default (a default factory's sentinel as "factory")."""
    params = list(inspect.signature(init).parameters.values())[1:]
    kept = (str, int, float, bool, tuple)
    return [(p.name, p.kind, p.default if isinstance(p.default, kept) or p.default is p.empty else "factory")
            for p in params]  # fmt: skip


def _twin(cls: type) -> Any:
    """A subclass of ``cls`` with no fields of its own whose ``__init__`` dataclasses writes."""
    return dataclasses.dataclass(frozen=True, eq=False)(
        type(cls.__name__, (cls,), {"__doc__": "twin", "__module__": __name__})
    )


def _event_classes() -> list[type[Event]]:
    found = [*events.CATALOGUE]
    for module in (policy_events, cloud_events):
        found += [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Event) and c is not Event]
    return found


@pytest.mark.parametrize("cls", _event_classes(), ids=lambda c: c.__name__)
def test_an_event_init_compiled_on_first_use_is_the_one_dataclasses_writes(cls: type[Event]) -> None:
    """``event_type`` compiles ``__init__`` on first use: same parameters, defaults and fields set."""
    twin = _twin(cls)
    assert _shape(_frozen_init(cls)) == _shape(twin.__init__)
    required = [p.name for p in list(inspect.signature(twin.__init__).parameters.values())[1:]
                if p.default is inspect.Parameter.empty]  # fmt: skip
    args = {name: f"value-{i}" for i, name in enumerate(required)}
    made, expected = cls(**args, ts=1.5), twin(**args, ts=1.5)
    assert made.to_dict() == expected.to_dict()
    assert cls(**args) != made  # ts from its default factory: now, not 1.5
    assert type(cls.__init__).__name__ == "function" and cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"


def test_an_event_type_stays_a_frozen_dataclass() -> None:
    """Immutability, ``replace``, ``__post_init__``, fields without ``__init__``, definition-time errors."""

    @event_type
    class Probe(Event):
        """A probe."""

        name: ClassVar[str] = "test.probe"
        host: str
        tries: int = 1
        seen: tuple[str, ...] = field(default_factory=tuple)
        note: str = field(default="n", init=False)

        def __post_init__(self) -> None:
            object.__setattr__(self, "host", self.host.lower())

    probe = Probe("r1", "WEB", ts=2.0)
    assert (probe.host, probe.tries, probe.seen, probe.note, probe.ts) == ("web", 1, (), "n", 2.0)
    assert dataclasses.is_dataclass(probe) and Probe.__match_args__ == ("run_id", "host", "tries", "seen")
    with pytest.raises(dataclasses.FrozenInstanceError):
        probe.host = "x"  # type: ignore[misc]
    assert dataclasses.replace(probe, tries=3) == Probe("r1", "web", 3, ts=2.0)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'host'"):
        Probe("r1")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):

        @event_type
        class Bad(Event):
            """Bad."""

            name: ClassVar[str] = "test.bad"
            a: int = 0
            b: int  # type: ignore[misc]


@pytest.mark.parametrize("cls", [Host, Command, Transfer, TaskDef, HostGroup, HostPlan, TaskPlan, Plan, CommandResult])
def test_a_frozen_dataclass_made_on_first_use_has_the_init_dataclasses_writes(cls: type) -> None:
    """``records.frozen_dataclass``: the same ``__init__`` parameters as ``@dataclass(frozen=True)``."""
    assert _shape(_frozen_init(cls)) == _shape(_twin(cls).__init__)
    assert "__eq__" in cls.__dict__ and "__hash__" in cls.__dict__ and "__setattr__" in cls.__dict__


def test_model_types_made_on_first_use_keep_the_init_equality_and_repr_of_a_dataclass() -> None:
    """``Transfer``, ``HostGroup``, ``Host``: same fields, eq, hash and repr as dataclasses gives."""
    where = Location("f.py", 3)
    group = HostGroup("web", ("a", "b"), (), where)
    assert group == HostGroup("web", ("a", "b"), (), where, None) and hash(group) == hash(
        HostGroup("web", ("a", "b"), (), where)
    )
    assert repr(group) == f"HostGroup(name='web', members=('a', 'b'), groups=(), location={where!r}, where=None)"
    kwargs: dict[str, Any] = {
        "cmd": "upload a -> /b",
        "timeout": 0,
        "line": 2,
        "kind": "upload",
        "src": "a",
        "dest": "/b",
    }
    t, twin = Transfer(**kwargs), _twin(Transfer)(**kwargs)
    assert [getattr(t, f.name) for f in dataclasses.fields(t)] == [getattr(twin, f.name) for f in dataclasses.fields(t)]
    assert repr(t) == repr(twin) and "content=" not in repr(t)  # a field with repr=False stays out
    assert dataclasses.replace(t, dest="/c").dest == "/c" and t.dest == "/b"
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.dest = "/x"  # type: ignore[misc]
    host = Host("web-1")
    assert repr(host) == repr(_twin(Host)("web-1")) and host == Host("web-1") and {host: 1}[Host("web-1")] == 1
