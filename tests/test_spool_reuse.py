"""The local executor gives the spool files of recorded commands to later commands (a rename,
not a new file per command), and never those that something still writes to."""

from __future__ import annotations

import json


def _outputs(stdout: str) -> list[tuple[str, str, str]]:
    """(task, stream, line) of every ``command.output`` event of a ``--format json`` run."""
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [(e["task"], e["stream"], e["line"]) for e in events if e["event"] == "command.output"]


def test_later_commands_take_the_spools_of_recorded_ones_and_show_only_their_own_output(nexus_project):
    tasks = ["from nexus_core import run, task\n"]
    for i in range(12):
        deps = f"deps=[t{i - 1}]" if i else ""
        tasks.append(f"@task({deps})\ndef t{i}():\n    run('echo out-{i}; echo err-{i} >&2')\n")
    # The last command counts the stdout spools in the run's status folder (its own included).
    tasks.append(
        '@task(deps=[t11])\ndef count():\n    run(\'ls "$XDG_CACHE_HOME"/nexus/runs/*/ | grep -c "[.]out$"\')\n'
    )
    nexus_project.write("\n".join(tasks))
    result = nexus_project.run("run", "count", "--format", "json")
    assert result.code == 0, result.stderr
    shown = _outputs(result.stdout)
    streams = (("stdout", "out"), ("stderr", "err"))
    expected = [(f"t{i}", stream, f"{word}-{i}") for i in range(12) for stream, word in streams]
    assert sorted(x for x in shown if x[0] != "count") == sorted(expected)
    (count,) = [line for task, _, line in shown if task == "count"]
    assert int(count) <= 2  # one pair per command at a time, not one per command of the run


def test_spools_a_background_job_still_writes_to_are_not_given_to_a_later_command(nexus_project):
    nexus_project.write(
        "from nexus_core import run, task\n\n"
        "@task()\ndef a():\n    run('(sleep 0.6; echo LATE-a; echo LATE-a-err >&2) & echo started-a')\n\n"
        "@task(deps=[a])\ndef b():\n    run('sleep 1.2; echo out-b')\n\n"
        "@task(deps=[b])\ndef c():\n    run('echo out-c')\n"
    )
    result = nexus_project.run("run", "c", "--format", "json")
    assert result.code == 0, result.stderr
    assert _outputs(result.stdout) == [("a", "stdout", "started-a"), ("b", "stdout", "out-b"), ("c", "stdout", "out-c")]


def test_the_runs_folders_are_the_users_alone(nexus_project):
    """What commands print stays in the spools until the run ends: the runs folder and the run's
    own are 0700 (they were 0755, readable by every user of a shared machine)."""
    nexus_project.write(
        "from nexus_core import run, task\n\n"
        "@task\ndef a():\n"
        '    run(\'stat -c %a "$XDG_CACHE_HOME"/nexus/runs "$XDG_CACHE_HOME"/nexus/runs/*/\')\n'
    )
    result = nexus_project.run("run", "a", "--format", "json")
    assert result.code == 0, result.stderr
    assert [line for _, _, line in _outputs(result.stdout)] == ["700", "700"]
