"""Inventory files read in process: the three formats, inheritance, ranges, every mistake with its line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nexus_core.discovery.inventory import InventoryError, expand_range, parse_inventory, read_inventory


def parse(text: str, name: str):
    return parse_inventory(textwrap.dedent(text).lstrip("\n"), name)


def problems(text: str, name: str) -> list[tuple[int, str, str]]:
    with pytest.raises(InventoryError) as err:
        parse(text, name)
    return [(p.location.line if p.location else 0, p.message, p.hint) for p in err.value.problems]


def by_name(inv, group=None):
    return {h.name: h for h in inv.select(group)}


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("web-[01:03]", ["web-01", "web-02", "web-03"]),
        ("db-[a:c].lan", ["db-a.lan", "db-b.lan", "db-c.lan"]),
        ("n[1:5:2]", ["n1", "n3", "n5"]),
        ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"]),
        ("plain", ["plain"]),
    ],
)
def test_ranges_expand_as_in_ansible(pattern, names):
    assert expand_range(pattern) == names


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("web-[3:1]", "it ends before it starts"),
        ("web-[1:10000000]", "more than 100,000 hosts in one range"),
        ("y-[0:99999]-[0:99999]", "holds more than 100,000 hosts"),  # 10^10: filled the memory
    ],
)
def test_a_range_that_cannot_be_built_says_why(pattern, why):
    with pytest.raises(ValueError, match=why):
        expand_range(pattern)


def test_toml_settings_and_vars_are_inherited_child_over_parent_host_over_all():
    inv = parse(
        """
        user = "base"
        vars = { a = 1, b = 1, c = 1 }

        [groups.parent]
        children = ["child"]
        port = 2200
        tags = ["p"]
        vars = { b = 2, c = 2 }

        [groups.child]
        hosts = ["h1", "h2"]
        port = 2201
        tags = ["c"]
        vars = { c = 3 }

        [hosts.h1]
        user = "own"
        tags = ["h"]
        vars = { c = 4 }
        """,
        "inv.toml",
    )
    hosts = by_name(inv, "parent")
    h1, h2 = hosts["h1"], hosts["h2"]
    assert (h1.user, h1.port, h1.tags, dict(h1.vars)) == ("own", 2201, ("p", "c", "h"), {"a": 1, "b": 2, "c": 4})
    assert (h2.user, h2.port, h2.tags, dict(h2.vars)) == ("base", 2201, ("p", "c"), {"a": 1, "b": 2, "c": 3})
    assert h1.facts["groups"] == ["parent", "child"]
    assert list(by_name(inv, "child")) == ["h1", "h2"]


def test_ini_all_vars_come_first_and_connection_variables_become_settings():
    inv = parse(
        """
        [all:vars]
        ansible_user=everyone
        colour=grey

        [web]
        w1 ansible_host=10.0.0.1 ansible_port=2222
        w2 ansible_connection=local colour=blue

        [web:vars]
        colour=green
        """,
        "hosts.ini",
    )
    hosts = by_name(inv, "web")
    assert (hosts["w1"].address, hosts["w1"].port, hosts["w1"].user) == ("10.0.0.1", 2222, "everyone")
    assert hosts["w1"].vars["colour"] == "green"  # the group's over all's
    assert hosts["w2"].vars["colour"] == "blue"  # the host's over the group's
    assert (hosts["w2"].address, hosts["w2"].transport) == ("local", "local")
    assert set(inv.groups) == {"all", "web"}


def test_yaml_problems_carry_their_lines():
    found = problems(
        """
        all:
          hosts:
            a:
            a:
          children:
            web:
              hostz:
                b:
              vars:
                ansible_port: 99999
        """,
        "hosts.yml",
    )
    assert [(line, message) for line, message, _ in found] == [
        (4, "host 'a' is listed twice in group 'all'"),
        (7, "group 'web': unknown key 'hostz'"),
        (9, "group 'web': port must be a number from 1 to 65535, not 99999"),
    ]
    assert found[1][2] == "did you mean 'hosts'?"


def test_yaml_syntax_error_has_its_line():
    [(line, message, _)] = problems("all:\n  hosts:\n    a: [\n", "hosts.yml")
    assert line >= 3 and message.startswith("YAML syntax error")


def test_child_groups_must_exist_and_must_not_include_each_other():
    found = problems(
        """
        [groups.a]
        children = ["b"]
        [groups.b]
        children = ["a", "nope"]
        """,
        "inv.toml",
    )
    messages = [m for _, m, _ in found]
    assert "group 'b' has child group 'nope', which the file does not define" in messages
    assert "child groups include each other: a -> b -> a" in messages


def test_a_setting_given_two_values_in_one_place_is_reported():
    found = problems("[web]\nw1 ansible_user=a ansible_user=b\n", "hosts.ini")
    assert found[0][0] == 2 and "user is 'a'" in found[0][1]


def test_a_parsed_inventory_is_reused_until_the_file_changes(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "inv.toml"
    path.write_text('[groups.web]\nhosts = ["a"]\n', encoding="utf-8")
    first = read_inventory(str(path))
    assert read_inventory(str(path)) is first  # same process, same file
    from nexus_core.discovery import inventory as module

    module._CACHE.clear()
    again = read_inventory(str(path))  # from the parsed copy on disk
    assert again is not first and again.groups["web"].hosts == ["a"]
    assert list((tmp_path / "cache" / "nexus" / "inventories").iterdir())
    path.write_text('[groups.web]\nhosts = ["a", "b"]\n', encoding="utf-8")
    assert read_inventory(str(path)).groups["web"].hosts == ["a", "b"]


def test_an_ini_child_group_the_file_does_not_define_is_reported_at_its_line():
    found = problems(
        """
        [web]
        web-1
        [db]
        db-1
        [prod:children]
        web
        dbb
        nosuch
        """,
        "hosts.ini",
    )
    assert found == [
        (7, "group 'prod' has child group 'dbb', which the file does not define", "did you mean 'db'?"),
        (8, "group 'prod' has child group 'nosuch', which the file does not define",
         "add a [nosuch] section, or remove it from [prod:children]"),
    ]  # fmt: skip
    # A child defined further down the file, or by its vars or children section alone, is defined.
    inv = parse(
        """
        [prod:children]
        web
        empty
        [web]
        web-1
        [empty:vars]
        role=none
        """,
        "hosts.ini",
    )
    assert sorted(by_name(inv, "prod")) == ["web-1"]


def test_a_yaml_child_group_named_but_never_defined_is_reported_at_its_line():
    found = problems(
        """
        all:
          children:
            web:
              hosts:
                web-1:
            prod:
              children:
                web:
                dbb:
        """,
        "hosts.yml",
    )
    hint = "give dbb its hosts: (or children:) somewhere in the file, or remove it from prod's children"
    assert found == [(9, "group 'prod' has child group 'dbb', which the file does not define", hint)]
    # A child given its hosts elsewhere in the file (before or after) is defined.
    inv = parse(
        """
        prod:
          children:
            db:
        db:
          hosts:
            db-1:
        """,
        "hosts.yml",
    )
    assert sorted(by_name(inv, "prod")) == ["db-1"]


def test_validate_refuses_an_ini_inventory_with_a_misspelt_child_group(nexus_project):
    nexus_project.write("[web]\nweb-1\n[db]\ndb-1\n[prod:children]\nweb\ndbb\n", "hosts.ini")
    nexus_project.write(
        'from nexus_core import inventory, run, task\ninventory("hosts.ini")\n\n'
        '@task(on="prod")\ndef t():\n    run("true")\n'
    )
    out = nexus_project.run("validate")
    assert out.code == 2, out
    assert "hosts.ini:7" in out.stderr, out
    assert "group 'prod' has child group 'dbb', which the file does not define" in out.stderr
    assert "did you mean 'db'?" in out.stderr and "Traceback" not in out.stderr


def test_a_host_whose_address_is_not_a_host_is_reported_at_its_line():
    found = problems(
        """
        [web]
        h1 ansible_host=héllo
        h2 ansible_host=10.0.0.2:2222 ansible_port=2200
        h3 ansible_host=root@10.0.0.3 ansible_user=pi
        hé
        ok ansible_host=10.0.0.5 ansible_user=pi ansible_port=2222
        """,
        "hosts.ini",
    )
    assert [line for line, _, _ in found] == [2, 3, 4, 5], found
    assert found[0][1].startswith("host 'h1': 'héllo' is not a valid host name")  # each name said once
    assert "give the user and the port with ansible_user and ansible_port" in found[1][2]
    assert "invalid user name 'pi@root'" in found[2][1]
    assert found[3][1].startswith("host 'hé': 'hé' is not a valid host name")
    assert "give it ansible_host=ADDRESS" in found[3][2]
    [(line, message, hint)] = problems('[groups.web]\nhosts = ["a"]\n[hosts.a]\naddress = "a b"\n', "inv.toml")
    assert line == 3 and message.startswith("host 'a': ") and "user and port" in hint


def test_two_names_for_one_machine_are_reported_not_merged():
    found = problems(
        """
        [web]
        nas ansible_host=192.168.1.5 role=nas
        [media]
        plex ansible_host=192.168.1.5 role=plex
        other ansible_host=192.168.1.5 ansible_port=2222
        l1 ansible_connection=local
        l2 ansible_connection=local
        """,
        "hosts.ini",
    )
    assert [(line, message) for line, message, _ in found] == [
        (4, "hosts 'nas' (line 2) and 'plex' both connect to '192.168.1.5': "
            "Nexus runs a machine once, so 'plex' would be merged into 'nas'"),
        (7, "hosts 'l1' (line 6) and 'l2' both connect to 'local': "
            "Nexus runs a machine once, so 'l2' would be merged into 'l1'"),
    ]  # fmt: skip
    assert "list it in each group" in found[0][2]
    inv = parse("[web]\nnas ansible_host=192.168.1.5\n[media]\nnas\n", "hosts.ini")  # one name, two groups
    assert sorted(by_name(inv, "media")) == ["nas"] and by_name(inv)["nas"].address == "192.168.1.5"


def test_validate_and_hosts_list_report_an_unusable_address_with_its_line(nexus_project):
    nexus_project.write("[web]\npi-1 ansible_host=127.0.0.2\npi-2 ansible_host=127.0.0.300\n", "hosts.ini")
    nexus_project.write(
        'from nexus_core import inventory, run, task\ninventory("hosts.ini")\n\n'
        '@task(on="web")\ndef t():\n    run("true")\n'
    )
    for args in (("validate",), ("hosts", "list"), ("run", "t", "--list-hosts")):
        out = nexus_project.run(*args)
        assert out.code == 2, (args, out)
        assert "hosts.ini:3: host 'pi-2': '127.0.0.300' is not a valid IPv4 address" in out.stderr, (args, out)
        assert "Traceback" not in out.stderr


def test_an_inventory_that_did_not_load_is_the_only_error_of_its_groups(nexus_project):
    """Its groups are missing because it did not load: "undefined host group 'web'" for each
    task and group that uses them only repeated the inventory's own error, misleadingly."""
    nexus_project.write("all:\n  children:\n    web:\n      hosts:\n        a: {ansible_host: 127.0.0.2\n", "inv.yml")
    nexus_project.write(
        'from nexus_core import hosts, inventory, run, task\ninventory("inv.yml")\n'
        'hosts("prod", groups=["web"])\n\n@task(on="web")\ndef t():\n    run("true")\n'
    )
    for args in (("validate",), ("run", "t", "--list-hosts")):
        out = nexus_project.run(*args)
        assert out.code == 2, (args, out)
        assert "inv.yml:6: YAML syntax error" in out.stderr, (args, out)
        assert "undefined" not in out.stderr, (args, out)


def test_an_address_mistake_is_reported_with_the_files_other_mistakes():
    """Every mistake at once: two names for one machine and an unusable address were only
    looked for once the rest of the file was right."""
    found = problems(
        """
        [web]
        w1 ansible_host=127.0.0.2
        w2 ansible_host=127.0.0.3 ansible_port=abc
        [web:oops]
        [db]
        x ansible_host=127.0.0.2
        """,
        "hosts.ini",
    )
    messages = [message for _, message, _ in found]
    assert any("port must be a number" in m for m in messages), messages
    assert any("unknown section [web:oops]" in m for m in messages), messages
    assert any("hosts 'w1' (line 2) and 'x' both connect to '127.0.0.2'" in m for m in messages), messages
    toml = problems(
        '[groups.web]\nhosts = ["a", "b"]\nchildren = ["nope"]\n[hosts.a]\naddress = "a b"\n[hosts.b]\nusr = "x"\n',
        "inv.toml",
    )
    texts = [message for _, message, _ in toml]
    assert any(m.startswith("host 'a': ") for m in texts) and len(texts) >= 3, texts


def test_h_names_an_inventory_group_the_task_does_not_use(nexus_project):
    """`-H web` / `-H '!web'` over a task on `prod` (web + db, from an inventory): the groups
    -H names are discovered with the task's, so their members decide what is kept (the
    exclusion kept every host, the inclusion said nothing was left)."""
    nexus_project.write(
        'user = "deploy"\nport = 2222\n[groups.web]\nhosts = ["web-[1:2]"]\n[groups.db]\nhosts = ["db-1"]\n'
        '[groups.prod]\nchildren = ["web", "db"]\n[hosts.web-1]\naddress = "127.0.0.2"\n'
        '[hosts.web-2]\naddress = "127.0.0.3"\n[hosts.db-1]\naddress = "127.0.0.5"\n',
        "inventory.toml",
    )
    nexus_project.write(
        'from nexus_core import inventory, run, task\ninventory("inventory.toml")\n\n'
        '@task(on="prod")\ndef report():\n    run("true")\n'
    )
    expected = {
        "!web": ["127.0.0.5:2222"],
        "web": ["127.0.0.2:2222", "127.0.0.3:2222"],
        "db": ["127.0.0.5:2222"],
        "w*,!web-2": ["127.0.0.2:2222"],
    }
    for limit, hosts in expected.items():
        out = nexus_project.run("run", "report", "--list-hosts", "-H", limit)
        assert out.code == 0, (limit, out)
        assert [line.strip() for line in out.stdout.splitlines() if line.startswith("  ")] == hosts, (limit, out)
    out = nexus_project.run("run", "report", "--list-hosts", "-H", "web,&db")
    assert out.code == 2 and "no host of this run's tasks is left" in out.stderr, out


def test_a_json_inventory_is_read_as_ansible_s_yaml_and_an_empty_host_name_is_refused(tmp_path):
    """A `.json` inventory (or one that starts with `{`) is Ansible's YAML inventory written as
    JSON: it was read as INI ("expected NAME=VALUE"). Empty and blank host names were kept."""
    text = '{"all": {"hosts": {"a": {"ansible_host": "127.0.0.2"}}, "children": {"web": {"hosts": {"b": null}}}}}\n'
    for name in ("inv.json", "inv.txt"):
        found = parse_inventory(text, str(tmp_path / name))
        assert sorted(found.hosts) == ["a", "b"] and found.groups["web"].hosts == ["b"], name
    assert parse_inventory("[web]\nweb-1\n", str(tmp_path / "hosts.txt")).groups["web"].hosts == ["web-1"]
    for bad in ('all:\n  hosts:\n    "": {ansible_host: 127.0.0.2}\n', 'all:\n  hosts:\n    "  ":\n'):
        with pytest.raises(InventoryError) as caught:
            parse_inventory(bad, str(tmp_path / "e.yml"))
        assert any("a host's name cannot be empty or hold spaces" in p.message for p in caught.value.problems), bad
    with pytest.raises(InventoryError):
        parse_inventory('[groups.web]\nhosts = [""]\n', str(tmp_path / "e.toml"))


def test_an_address_holding_a_port_is_said_so(tmp_path):
    """`ansible_host=web-1:2222` with a port of its own was "'web-1:2222' is not an IPv6 address"."""
    with pytest.raises(InventoryError) as caught:
        parse_inventory("[web]\nweb-1 ansible_host=web-1:2222 ansible_port=22\n", str(tmp_path / "h.ini"))
    [problem] = caught.value.problems
    assert problem.message == "host 'web-1': ansible_host 'web-1:2222' holds a port", problem
    assert "ansible_port" in problem.hint


def test_an_inventory_read_twice_is_said_once_and_a_clash_names_the_other_inventory(nexus_project):
    """Reading one inventory twice said, for each group, that "the nexusfile" defined it."""
    nexus_project.write('[groups.web]\nhosts = ["a"]\n[groups.db]\nhosts = ["b"]\n', "inv.toml")
    nexus_project.write('[groups.web]\nhosts = ["c"]\n', "other.toml")
    nexus_project.write(
        'from nexus_core import inventory, run, task\ninventory("inv.toml")\ninventory("inv.toml")\n'
        'inventory("other.toml")\n\n@task(on="web")\ndef t():\n    run("true")\n'
    )
    out = nexus_project.run("validate")
    assert out.code == 2, out
    assert out.stderr.count("is read twice") == 1 and "inventory 'inv.toml' is read twice (line 2" in out.stderr
    assert "declares group 'web', which inventory 'inv.toml' already defines (line 2)" in out.stderr, out
    assert "the nexusfile already defines" not in out.stderr


def test_a_toml_host_entry_no_group_lists_is_reported_with_the_name_it_likely_meant(nexus_project):
    # [hosts.web1] meant for web-1: its address and port were dropped without a word, and the
    # run connected to web-1 by name on port 22.
    nexus_project.write('[groups.web]\nhosts = ["web-1"]\n\n[hosts.web1]\naddress = "10.0.0.11"\nport = 2222\n',
                        "hosts.toml")  # fmt: skip
    nexus_project.write(
        'from nexus_core import inventory, run, task\ninventory("hosts.toml")\n\n'
        '@task(on="web")\ndef t():\n    run("true")\n'
    )
    for args in (("validate",), ("hosts", "list"), ("run", "t", "-n")):
        out = nexus_project.run(*args)
        assert out.code == 2, (args, out)
        assert "hosts.toml:4: host 'web1' ([hosts.web1]) is in no group" in out.stderr, (args, out)
        assert "did you mean [hosts.web-1]?" in out.stderr and "Traceback" not in out.stderr


def test_a_toml_file_of_host_entries_only_is_a_plain_list_and_a_stray_one_beside_groups_is_not():
    flat = parse('[hosts.a]\naddress = "10.0.0.1"\n[hosts.b]\n', "flat.toml")
    assert [h.name for h in flat.select()] == ["a", "b"]
    assert problems('[groups.db]\nhosts = ["db-1"]\n\n[hosts.cache]\nport = 6379\n', "mixed.toml") == [
        (4, "host 'cache' ([hosts.cache]) is in no group, so inventory() and group selections never use it",
         'list it in a group (hosts = ["cache"] under [groups.NAME]) or remove the entry'),
    ]  # fmt: skip
    # A host listed by a child group only is in a group; the table may come before the group.
    inv = parse('[hosts.web-1]\nport = 2200\n\n[groups.web]\nhosts = ["web-1"]\n\n[groups.prod]\nchildren = ["web"]\n',
                "order.toml")  # fmt: skip
    assert by_name(inv, "prod")["web-1"].port == 2200


def test_a_yaml_alias_bomb_and_a_recursive_alias_are_refused_at_once():
    """Ten anchors of ten aliases each (10^10 values in a dozen lines) filled the memory."""
    lines = ["all:", "  vars:", "    v0: &v0 [" + ", ".join(["x"] * 10) + "]"]
    lines += [f"    v{i}: &v{i} [" + ", ".join([f"*v{i - 1}"] * 10) + "]" for i in range(1, 10)]
    lines += ["  hosts:", "    a:"]
    ((line, message, hint),) = problems("\n".join(lines) + "\n", "bomb.yml")
    assert (line, hint) == (1, "write the values out, or use fewer aliases")
    assert message == "the file expands to more than 2,000,000 values once its YAML aliases (*name) are written out"
    assert problems("all:\n  vars:\n    loop: &l [1, *l]\n  hosts:\n    a:\n", "loop.yml")[0][1].startswith(
        "a YAML alias (*name) is inside the value it names"
    )
    # aliases the usual way stay fine
    inv = parse("all:\n  vars:\n    base: &b {port: 2222}\n  hosts:\n    a:\n      extra: *b\n", "ok.yml")
    assert by_name(inv)["a"].vars["extra"] == {"port": 2222}


def test_special_files_and_deep_nesting_are_refused_not_read_forever(tmp_path: Path):
    """/dev/zero and a FIFO as an inventory hung `nexus validate`; deep TOML nesting was a RecursionError."""
    import os

    fifo = tmp_path / "hosts.toml"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        with pytest.raises(InventoryError, match="not a regular file"):
            read_inventory(path)
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(InventoryError) as err:
        read_inventory(str(deep))
    assert [p.message for p in err.value.problems] == ["TOML syntax error: values nested too deeply"]


def test_a_limit_file_that_is_a_device_or_a_fifo_is_refused(tmp_path: Path):
    import os

    from nexus_core.limit import LimitError, parse_limit

    fifo = tmp_path / "hosts.txt"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        with pytest.raises(LimitError, match="not a regular file"):
            parse_limit([f"@{path}"])


def test_an_empty_ini_header_and_an_open_range_say_what_they_are():
    assert problems("[]\nweb-1\n", "hosts.ini")[0][:2] == (1, "an empty section header")
    # "x-[1:" read as host x-[1 and port '': "port '' is not a number"
    assert problems('[groups.web]\nhosts = ["x-[1:"]\n', "h.toml")[0][:2] == (
        2, "host 'x-[1:': a range is not closed or not of the form [01:20] or [a:f]")  # fmt: skip
    assert [h.name for h in parse('[groups.web]\nhosts = ["[::1]", "y[a:b]z"]\n', "ok.toml").select()] == [
        "[::1]", "yaz", "ybz"]  # fmt: skip
