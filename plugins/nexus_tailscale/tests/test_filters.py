"""The filters of discover("tailscale", ...): which devices, at which address, targeted or not."""

from __future__ import annotations

import pytest

from nexus_tailscale.devices import parse_status
from nexus_tailscale.select import FilterError, Filters, select
from nexus_tailscale.testing import SAMPLE, Peer, status_document

TAILNET = parse_status(status_document(SAMPLE))


def names(**filters):
    return [s.device.name for s in select(TAILNET, Filters.parse(filters))]


def targets(**filters):
    return [s.device.name for s in select(TAILNET, Filters.parse(filters)) if s.target]


def test_tags_must_all_be_present_and_the_prefix_is_optional():
    assert targets(tags=["tag:web"]) == ["test-web-3", "web-1", "web-2"]
    assert targets(tags=["web", "prod"]) == ["web-1", "web-2"]
    assert targets(tags="db") == ["db-1"]


def test_os_is_case_insensitive_and_takes_a_list():
    assert targets(os="MACOS") == ["laptop"]
    assert targets(os=["windows", "macOS"]) == ["laptop", "win"]


def test_hostname_and_exclude_hostname_are_regexes():
    assert targets(tags=["web"], exclude_hostname=r"^test-") == ["web-1", "web-2"]
    assert targets(hostname=r"^web-\d$") == ["web-1", "web-2"]


def test_exclude_takes_names_dns_names_and_addresses():
    assert targets(tags=["web"], exclude=["web-1", "test-web-3.tail1234.ts.net"]) == ["web-2"]
    assert targets(tags=["web"], exclude="100.64.0.12") == ["test-web-3", "web-1"]


def test_offline_and_expired_are_listed_not_targeted():
    listed = {s.device.name: s for s in select(TAILNET, Filters.parse({"tags": ["web"]}))}
    assert set(listed) == {"web-1", "web-2", "test-web-3", "old-box", "stale"}
    assert not listed["old-box"].target and "offline" in listed["old-box"].note
    assert not listed["stale"].target and "expired" in listed["stale"].note
    assert "old-box" in targets(tags=["web"], online=False)


def test_address_kinds():
    f = {"tags": ["db"]}
    (dns,) = select(TAILNET, Filters.parse(f))
    (v4,) = select(TAILNET, Filters.parse(f | {"address": "ipv4"}))
    (v6,) = select(TAILNET, Filters.parse(f | {"address": "ipv6"}))
    assert dns.address == "db-1.tail1234.ts.net"
    assert v4.address == "100.64.0.21"
    assert ":" in v6.address


def test_without_magic_dns_the_ipv4_address_is_used_with_a_note():
    doc = status_document([Peer("a", "100.64.0.2")])
    doc["CurrentTailnet"]["MagicDNSEnabled"] = False
    (a,) = [s for s in select(parse_status(doc), Filters()) if s.device.name == "a"]
    assert a.address == "100.64.0.2" and a.target and "MagicDNS is off" in a.note


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"tags": 3}, "tags= takes a string or a list of strings"),
        ({"hostname": "("}, "hostname='(' is not a valid regular expression"),
        ({"online": "yes"}, "online= takes True or False"),
        ({"address": "ipv5"}, "address= takes one of 'dns', 'ipv4', 'ipv6'"),
    ],
)
def test_bad_filter_values(filters, message):
    with pytest.raises(FilterError, match=message.replace("(", r"\(")):
        Filters.parse(filters)
