"""Host strings: ``host``, ``user@host``, ``user@host:port``, ``[v6addr]:port`` (unit and property tests)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexus_core.hosts import HostParseError, format_host, parse_host
from nexus_core.model import Host

# --- the documented forms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "user", "port"),
    [
        ("web-1.example.com", "web-1.example.com", None, None),
        ("web-1", "web-1", None, None),
        ("deploy@web-2.example.com", "web-2.example.com", "deploy", None),
        ("deploy@web-2.example.com:2222", "web-2.example.com", "deploy", 2222),
        ("web-2:22", "web-2", None, 22),
        ("10.0.0.7", "10.0.0.7", None, None),
        ("root@10.0.0.7:2200", "10.0.0.7", "root", 2200),
        ("[2001:db8::1]:2222", "2001:db8::1", None, 2222),
        ("deploy@[2001:db8::1]:22", "2001:db8::1", "deploy", 22),
        ("[::1]", "::1", None, None),
        ("::1", "::1", None, None),
        ("ops@fe80::1", "fe80::1", "ops", None),
        ("  padded.example.com  ", "padded.example.com", None, None),
        ("svc_account$@dc-1", "dc-1", "svc_account$", None),
        ("host.example.com.", "host.example.com.", None, None),
        ("h:65535", "h", None, 65535),
        ("h:1", "h", None, 1),
    ],
)
def test_valid_forms(text: str, name: str, user: str | None, port: int | None) -> None:
    host = parse_host(text)
    assert (host.name, host.user, host.port, host.transport) == (name, user, port, "ssh")
    assert host.source == text
    assert not host.is_local


def test_transport_argument_and_prefix() -> None:
    assert parse_host("db-1", transport="agent").transport == "agent"
    host = parse_host("agent://ops@db-1:7000")
    assert (host.transport, host.user, host.name, host.port) == ("agent", "ops", "db-1", 7000)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty host string"),
        ("   ", "empty host string"),
        ("web 1", "contains whitespace"),
        ("web\t1", "contains whitespace"),
        ("@web", "invalid user name"),
        ("de ploy@web", "contains whitespace"),
        ("-x@web", "invalid user name"),
        ("web:", "port '' is not a number"),
        ("web:ssh", "port 'ssh' is not a number"),
        ("web:-1", "is not a number"),
        ("web:+22", "is not a number"),
        ("web:²", "is not a number"),
        ("web:٢٢", "is not a number"),
        ("web:0", "out of range"),
        ("web:65536", "out of range"),
        ("web:99999999999999999999999999", "out of range"),
        ("web:" + "9" * 5000, "out of range"),
        ("[::1", "never closes"),
        ("[::1]x", "unexpected 'x'"),
        ("[::1]:", "is not a number"),
        ("[web]:22", "is not an IPv6 address"),
        ("[10.0.0.1]:22", "is not an IPv6 address"),
        ("1:2:3", "not a valid IPv6 address"),
        ("fe80::1::2", "not a valid IPv6 address"),
        ("web..example.com", "not a valid host name"),
        ("-web", "not a valid host name"),
        ("web/1", "not a valid host name"),
        ("wéb", "not a valid host name"),
        ("a" * 64, "not a valid host name: its part 'aaaaaaaaaaaaaaaaaaaa...' is 64 characters long"),
        ("a." * 130, "longer than 253"),
        ("999.1.1.1", "not a valid IPv4 address"),
        ("1.2.3", "not a valid IPv4 address"),
        (".", "not a valid host name"),
        ("web\x00", "not a valid host name"),
    ],
)
def test_invalid_forms_say_why(text: str, fragment: str) -> None:
    with pytest.raises(HostParseError) as err:
        parse_host(text)
    assert fragment in str(err.value)


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr is broken")


@pytest.mark.parametrize("value", [None, 22, 1.5, b"web", ["web"], {"host": "web"}, _BadRepr()])
def test_non_strings_raise_host_parse_error(value: Any) -> None:
    with pytest.raises(HostParseError, match="a host must be a string"):
        parse_host(value)


def test_host_parse_error_is_a_value_error() -> None:
    assert issubclass(HostParseError, ValueError)


# --- properties ---------------------------------------------------------------------------------

_label = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,20}", fullmatch=True)
hostnames = (
    st.lists(_label, min_size=1, max_size=5)
    .filter(lambda labels: not all(label.isdigit() for label in labels))
    .map(".".join)
)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
users = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,15}\$?", fullmatch=True)
ports = st.integers(min_value=1, max_value=65535)
transports = st.sampled_from(["ssh", "agent", "azure", "x-y_z"])


@st.composite
def host_parts(draw: st.DrawFn) -> tuple[str, str | None, int | None, str]:
    name = draw(st.one_of(hostnames, ipv4, ipv6))
    user = draw(st.none() | users)
    port = draw(st.none() | ports)
    transport = draw(transports)
    return name, user, port, transport


def compose(name: str, user: str | None, port: int | None) -> str:
    """The host string a user would write for these parts (the documented forms)."""
    shown = f"[{name}]" if ":" in name and port is not None else name
    text = f"{user}@{shown}" if user else shown
    return f"{text}:{port}" if port is not None else text


@given(host_parts())
def test_valid_forms_round_trip(parts: tuple[str, str | None, int | None, str]) -> None:
    name, user, port, transport = parts
    text = compose(name, user, port)
    host = parse_host(text, transport=transport)
    assert (host.name, host.user, host.port, host.transport) == (name, user, port, transport)
    assert host.source == text
    # formatting gives back a string that parses to the same host
    again = parse_host(format_host(host))
    assert (again.name, again.user, again.port, again.transport) == (name, user, port, transport)
    assert format_host(host, default_transport=transport) == text


@given(host_parts())
def test_bracketed_ipv6_without_port(parts: tuple[str, str | None, int | None, str]) -> None:
    name, user, _, _ = parts
    if ":" not in name:
        return
    host = parse_host(f"{user}@[{name}]" if user else f"[{name}]")
    assert (host.name, host.user, host.port) == (name, user, None)


_hostish = st.text(alphabet="ab19.-_@:[]%$/ \t\n\x00é²٣", max_size=30)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=60), _hostish, st.builds(lambda a, b: a + b, _hostish, st.text(max_size=10))))
def test_any_text_parses_or_raises_host_parse_error(text: str) -> None:
    try:
        host = parse_host(text)
    except HostParseError as exc:
        assert str(exc)
        return
    # whatever is accepted is a sane host
    assert isinstance(host, Host)
    assert host.name and not any(c.isspace() for c in host.name)
    assert host.port is None or 1 <= host.port <= 65535
    assert host.user is None or (host.user and "@" not in host.user)
    if ":" in host.name:
        ipaddress.IPv6Address(host.name)  # only IPv6 addresses may contain ':'
    again = parse_host(format_host(host))
    assert (again.name, again.user, again.port, again.transport) == (host.name, host.user, host.port, host.transport)


@given(st.one_of(st.none(), st.integers(), st.floats(), st.binary(), st.lists(st.text(max_size=5), max_size=3)))
def test_any_non_string_raises_host_parse_error(value: object) -> None:
    with pytest.raises(HostParseError):
        parse_host(value)


@pytest.mark.parametrize("text", ["web-[1:3]", "web-[01:20].example.com", "deploy@db-[a:f]:2222", "ssh://web-[1:3]"])
def test_an_inventory_range_in_a_host_string_says_where_ranges_are_expanded(text: str) -> None:
    with pytest.raises(HostParseError) as err:
        parse_host(text)
    message = str(err.value)
    assert "is expanded in inventory files only" in message and "docs/inventories.md" in message, message
    assert "is not a number" not in message


def test_bracketed_ipv6_addresses_are_not_taken_for_ranges() -> None:
    assert parse_host("[::1]:22").name == "::1"
    assert parse_host("u@[2001:db8::1]:2222").port == 2222
