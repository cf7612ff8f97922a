"""-H/--hosts patterns (nexus_core.limit): unit and property tests of the pure matcher."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_core.hosts import parse_host
from nexus_core.limit import Limit, LimitError, host_key, parse_limit, rerun_command
from nexus_core.model import Host

WEB = [parse_host(h) for h in ("web-1.example.com", "deploy@web-2.example.com:2222", "web-3")]
DB = [parse_host(h) for h in ("db-1", "10.0.0.5")]
ALL = WEB + DB
GROUPS = {"web": {host_key(h) for h in WEB}, "db": {host_key(h) for h in DB}, "all": {host_key(h) for h in ALL}}


def names(limit: Limit, hosts: list[Host] = ALL) -> list[str]:
    return [h.label for h in limit.select(hosts, GROUPS)]


def test_names_addresses_groups_and_globs():
    assert names(parse_limit(["web-3"])) == ["web-3"]
    assert names(parse_limit(["10.0.0.5"])) == ["10.0.0.5"]
    assert names(parse_limit(["db"])) == ["db-1", "10.0.0.5"]
    assert names(parse_limit(["web-*.example.com"])) == ["web-1.example.com", "web-2.example.com:2222"]
    assert names(parse_limit(["10.0.0.*"])) == ["10.0.0.5"]
    assert names(parse_limit(["d*"])) == ["db-1", "10.0.0.5"]  # the group db matches the glob


def test_user_and_port_forms_match():
    for form in ("deploy@web-2.example.com", "web-2.example.com:2222", "deploy@web-2.example.com:2222"):
        assert names(parse_limit([form])) == ["web-2.example.com:2222"], form
    assert names(parse_limit(["web-2.example.com"])) == ["web-2.example.com:2222"]
    assert names(parse_limit(["other@web-2.example.com"])) == []


def test_address_and_port_name_every_user_of_them_even_when_their_labels_carry_the_users():
    from dataclasses import replace

    two = [parse_host("deploy@10.0.0.7:2222"), parse_host("ops@10.0.0.7:2222"), parse_host("deploy@10.0.0.8:2222")]
    # Two users on one address and port: the planner labels them with their users.
    two = [replace(h, display=h.source) if h.name == "10.0.0.7" else h for h in two]
    groups = {"fleet": {host_key(h) for h in two}}
    for form in ("10.0.0.7:2222", "10.0.0.7:22*", "10.0.0.7"):
        kept = parse_limit([form]).select(two, groups)
        assert [h.label for h in kept] == ["deploy@10.0.0.7:2222", "ops@10.0.0.7:2222"], form
    assert [h.label for h in parse_limit(["ops@10.0.0.7:2222"]).select(two, groups)] == ["ops@10.0.0.7:2222"]


def test_comma_separated_repeated_exclusion_and_intersection():
    assert names(parse_limit(["web,db", "!web-3"])) == [
        "web-1.example.com",
        "web-2.example.com:2222",
        "db-1",
        "10.0.0.5",
    ]
    assert names(parse_limit(["!web"])) == ["db-1", "10.0.0.5"]  # only exclusions: from every host
    assert names(parse_limit(["all,&web,!web-1*"])) == ["web-2.example.com:2222", "web-3"]


def test_each_task_keeps_only_its_own_hosts():
    limit = parse_limit(["web-1.example.com,db-1"])
    assert names(limit, WEB) == ["web-1.example.com"]
    assert names(limit, DB) == ["db-1"]


def test_file_patterns_with_comments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "hosts.txt").write_text("# canaries\nweb-1.example.com  # first\n\n!db-1\ndb\n")
    monkeypatch.chdir(tmp_path)
    limit = parse_limit(["@hosts.txt"])
    assert [str(t) for t in limit.terms] == ["web-1.example.com", "!db-1", "db"]
    assert names(limit) == ["web-1.example.com", "10.0.0.5"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "-H/--hosts is empty"),
        (" , ", "-H/--hosts is empty"),
        ("!", "'!' needs a pattern after it"),
        ("@", "give a file name after '@'"),
        ("@/nonexistent/hosts.txt", "cannot read the file"),
        ("web 1", "contains whitespace"),
    ],
)
def test_bad_values_say_why(value: str, message: str):
    with pytest.raises(LimitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_limit([value])


def test_files_that_include_each_other_stop():
    with pytest.raises(LimitError, match="include each other"):
        parse_limit(["@a"], read=lambda path: "@b" if path == "a" else "@a")


def test_unmatched_patterns_are_named():
    limit = parse_limit(["wbe,web-3,!nope,db"])
    assert limit.unmatched(ALL, GROUPS) == ["wbe", "!nope"]


def test_rerun_command_repeats_given_options_quoted():
    cmd = rerun_command(["migrate", "version=1 2"], ["db-1", "db-2"], {"-c": "my file.py", "-u": None, "-i": "k"})
    assert cmd == "nexus run migrate 'version=1 2' -H db-1,db-2 -c 'my file.py' -i k"


# --- properties -----------------------------------------------------------------------------------

label = st.builds(
    lambda a, b: a + b,
    st.sampled_from(string.ascii_lowercase),
    st.text(string.ascii_lowercase + string.digits + "-", max_size=5),
)
hosts_st = st.lists(label, min_size=1, max_size=8, unique=True).map(lambda ns: [parse_host(n) for n in ns])


@settings(max_examples=150, deadline=None)
@given(hosts=hosts_st, data=st.data())
def test_result_is_an_ordered_subset(hosts: list[Host], data: st.DataObject):
    picked = data.draw(st.lists(st.sampled_from([h.name for h in hosts]), min_size=1, max_size=4))
    kept = parse_limit([",".join(picked)]).select(hosts, {})
    assert kept == [h for h in hosts if h in kept]
    assert {h.name for h in kept} == set(picked)


@settings(max_examples=150, deadline=None)
@given(hosts=hosts_st, data=st.data())
def test_exclusion_is_the_complement(hosts: list[Host], data: st.DataObject):
    picked = data.draw(st.lists(st.sampled_from([h.name for h in hosts]), min_size=1, max_size=4))
    groups = {"G": {host_key(h) for h in hosts}}
    included = parse_limit([",".join(picked)]).select(hosts, groups)
    excluded = parse_limit([",".join("!" + p for p in picked)]).select(hosts, groups)
    assert set(map(host_key, included)) | set(map(host_key, excluded)) == set(map(host_key, hosts))
    assert not set(map(host_key, included)) & set(map(host_key, excluded))


@settings(max_examples=150, deadline=None)
@given(hosts=hosts_st, data=st.data())
def test_order_of_patterns_and_repeating_h_do_not_matter(hosts: list[Host], data: st.DataObject):
    pool = [h.name for h in hosts] + ["!" + h.name for h in hosts] + ["&" + h.name for h in hosts] + ["*", "G"]
    picked = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5))
    groups = {"G": {host_key(h) for h in hosts[: len(hosts) // 2]}}
    one = parse_limit([",".join(picked)]).select(hosts, groups)
    many = parse_limit(list(reversed(picked))).select(hosts, groups)
    assert one == many


@settings(max_examples=100, deadline=None)
@given(hosts=hosts_st)
def test_star_keeps_everything_and_a_group_is_its_members(hosts: list[Host]):
    half = hosts[: len(hosts) // 2 + 1]
    groups = {"G": {host_key(h) for h in half}}
    assert parse_limit(["*"]).select(hosts, groups) == hosts
    assert parse_limit(["G"]).select(hosts, groups) == half


def test_ipv6_hosts_match_as_written_with_their_brackets():
    v6 = [parse_host(h) for h in ("[::1]:2222", "deploy@[::2]", "::3", "[fe80::1]:22")]
    groups = {"v6": {host_key(h) for h in v6}}
    for pattern, label in (("[::1]:2222", "[::1]:2222"), ("::1", "[::1]:2222"), ("deploy@[::2]", "::2"),
                           ("[::2]", "::2"), ("[::3]", "::3"), ("[fe80::1]:22", "[fe80::1]:22")):  # fmt: skip
        assert [h.label for h in parse_limit([pattern]).select(v6, groups)] == [label], pattern
        assert parse_limit([pattern]).unmatched(v6, groups) == [], pattern
    assert [h.label for h in parse_limit(["v6,![::1]:2222,!::3"]).select(v6, groups)] == ["::2", "[fe80::1]:22"]
    assert [h.label for h in parse_limit(["[::9]"]).select(v6, groups)] == []
