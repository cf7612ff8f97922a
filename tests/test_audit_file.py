"""The file sink's tamper evidence through the real CLI: a log written by real runs (rotated
and gzipped), then altered, deleted, inserted, reordered and truncated records, each caught by
``nexus audit verify`` at the right file and line (exit 1)."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nexus_core.audit import chain
from nexus_core.testing import NexusProject

PROJECT = """
from nexus_core import run, task

@task
def build():
    run("echo building")
    run("echo linking")

@task(deps=[build])
def deploy():
    run("echo deploying")
"""


def _project(root: Path) -> NexusProject:
    xdg = root / ".xdg"
    env = {f"XDG_{k}_HOME": str(xdg / k.lower()) for k in ("STATE", "CONFIG", "DATA", "CACHE")}
    (root / "project").mkdir(parents=True)
    return NexusProject(root / "project", env)


def _configure(project: NexusProject, log: Path) -> None:
    config = Path(project.env["XDG_CONFIG_HOME"]) / "nexus" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[audit.sinks.trail]\ntype = "file"\nrequired = true\npath = "{log}"\n'
                      "max_bytes = 3000\ncheckpoint_every = 5\n", encoding="utf-8")  # fmt: skip


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a project, its config (key, head) and a log of three runs (rotated, gzipped)."""
    root = tmp_path_factory.mktemp("audit-pristine")
    project = _project(root)
    project.write(PROJECT)
    _configure(project, root / "log" / "audit.log")
    out = project.run("run", "deploy")
    assert out.code == 0, out
    # Two runs of two projects at once, into the same log: each batch is written under a lock.
    other = NexusProject(root / "other", project.env)
    other.write(PROJECT)
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda p: p.run("run", "deploy"), [project, other]))
    assert all(o.code == 0 for o in outs), outs
    assert chain.rotated_files(str(root / "log" / "audit.log")), "the log was rotated at least once"
    return root


class Copy:
    """A copy of the pristine folder to tamper with."""

    def __init__(self, pristine: Path, tmp_path: Path) -> None:
        self.root = tmp_path / "copy"
        shutil.copytree(pristine, self.root, symlinks=True)
        xdg = self.root / ".xdg"
        env = {f"XDG_{k}_HOME": str(xdg / k.lower()) for k in ("STATE", "CONFIG", "DATA", "CACHE")}
        self.project = NexusProject(self.root / "project", env)
        self.log = self.root / "log" / "audit.log"
        _configure(self.project, self.log)
        keys = Path(self.project.env["XDG_CONFIG_HOME"]) / "nexus" / "audit"
        old = Path(chain.head_path(str(keys), str(pristine / "log" / "audit.log")))
        Path(chain.head_path(str(keys), str(self.log))).write_text(old.read_text())  # the writer's head, moved along

    def lines(self, path: Path | None = None) -> list[str]:
        path = path or self.log
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return data.decode().splitlines()

    def write(self, lines: list[str], path: Path | None = None, newline: bool = True) -> None:
        path = path or self.log
        data = ("\n".join(lines) + ("\n" if newline else "")).encode()
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)

    def rotated(self) -> list[Path]:
        return [Path(p) for p in chain.rotated_files(str(self.log))]

    def records_run(self, length: int = 3) -> tuple[Path, list[str], int]:
        """A file, its lines and the index of the first of ``length`` consecutive record lines
        (no checkpoint) in it: the current file when it has such a run, else the newest
        rotated one that does. Where rotation falls depends on the records' sizes (paths,
        durations), so the current file may hold only a few lines."""
        for path in [self.log, *reversed(self.rotated())]:
            lines = self.lines(path)
            for i in range(len(lines) - length):
                if all('"checkpoint"' not in line for line in lines[i : i + length]):
                    return path, lines, i
        raise AssertionError("no run of consecutive records")

    def verify(self) -> dict:
        """``nexus audit verify LOG --format json``: the CLI's own command, in this process (fast)."""
        from click.testing import CliRunner

        from nexus_core.cli.application import Exit, main

        with _in(self.project.root):
            result = CliRunner().invoke(main, ["audit", "verify", str(self.log), "--format", "json"],
                                        env=self.project.env, catch_exceptions=True)  # fmt: skip
        code = result.exception.code if isinstance(result.exception, Exit) else result.exit_code
        found = json.loads(result.stdout)
        found["code"] = code
        return found


@contextlib.contextmanager
def _in(folder: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture
def copy(pristine: Path, tmp_path: Path) -> Copy:
    return Copy(pristine, tmp_path)


def expect(found: dict, kind: str, path: Path, line: int) -> None:
    assert found["code"] == 1 and found["ok"] is False, found
    assert (found["kind"], found["file"], found["line"]) == (kind, str(path), line), found


def test_the_log_of_real_runs_verifies_and_its_signing_key_is_private(copy: Copy):
    found = copy.verify()
    assert found["code"] == 0 and found["ok"] is True and found["notes"] == [], found
    assert found["records"] >= 27 and found["checkpoints"] >= 5, found
    key = Path(copy.project.env["XDG_CONFIG_HOME"]) / "nexus" / "audit" / "signing.key"
    assert key.stat().st_mode & 0o777 == 0o600
    text = copy.project.run("audit", "verify", str(copy.log))  # the real command line, in a subprocess
    assert text.code == 0 and "intact:" in text.stdout, text
    first = json.loads(copy.lines(copy.rotated()[0])[0])
    assert first["seq"] == 1 and first["prev"] == chain.GENESIS and first["event"] == "run.started"


def test_an_altered_record_is_caught_at_its_line(copy: Copy):
    path, lines, i = copy.records_run()
    lines[i + 1] = lines[i + 1].replace('"user":"', '"user":"x', 1)
    copy.write(lines, path)
    expect(copy.verify(), "altered", path, i + 2)


def test_a_deleted_record_is_caught_where_it_is_missing(copy: Copy):
    path, lines, i = copy.records_run()
    del lines[i + 1]
    copy.write(lines, path)
    found = copy.verify()
    expect(found, "deleted", path, i + 2)
    assert "missing before this line" in found["message"]


def test_an_inserted_record_is_caught_at_its_line(copy: Copy):
    path, lines, i = copy.records_run()
    forged = json.loads(lines[i])
    forged["user"] = "mallory"
    lines.insert(i + 1, json.dumps(forged))  # its old seq and hash: a second record of that number
    copy.write(lines, path)
    expect(copy.verify(), "inserted", path, i + 2)
    lines = copy.lines(path)
    lines[i + 1] = json.dumps({"timestamp": "2026-01-01T00:00:00.000Z", "event": "task.started", "user": "mallory"})
    copy.write(lines, path)
    expect(copy.verify(), "inserted", path, i + 2)


def test_reordered_records_are_caught_at_the_first_out_of_place(copy: Copy):
    path, lines, i = copy.records_run()
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    copy.write(lines, path)
    found = copy.verify()
    expect(found, "reordered", path, i + 1)


def test_a_truncated_log_is_caught(copy: Copy):
    lines = copy.lines()
    copy.write(lines[:-2])  # the final checkpoint and the last record gone
    found = copy.verify()
    expect(found, "truncated", copy.log, len(lines) - 2)
    # Two runs wrote the log's end at once: what is left ends with the other run's final
    # checkpoint (the writer's head then names the records missing) or with a record.
    assert "missing at the end" in found["message"] or "rewritten" in found["message"], found
    # Ending with a record, nothing tells a killed writer's end from a chain rewritten
    # without its checkpoints: said.
    last = max(i for i, line in enumerate(lines) if '"checkpoint"' not in line)
    copy.write(lines[: last + 1])
    found = copy.verify()
    expect(found, "truncated", copy.log, last + 1)
    assert "rewritten" in found["message"], found
    copy.write([*lines[:-1], lines[-1][: len(lines[-1]) // 2]], newline=False)  # cut mid-line
    expect(copy.verify(), "truncated", copy.log, len(lines))


def test_cutting_back_to_an_earlier_end_is_caught_by_the_writers_head(copy: Copy):
    copy.log.unlink()  # the last rotated file ends with a valid final checkpoint
    last = copy.rotated()[-1]
    found = copy.verify()
    expect(found, "truncated", last, len(copy.lines(last)))
    assert "missing at the end" in found["message"]


def test_a_run_does_not_take_up_the_chain_from_a_cut_so_the_cut_stays_visible(copy: Copy):
    """Appending after a cut would rewrite the writer's head and hide the records removed."""
    copy.log.write_text("")  # the current file emptied: the chain now ends in the last rotated file
    out = copy.project.run("run", "deploy")
    assert out.code == 2 and "but its writer last wrote record" in out.stderr, out
    assert "move the log and" in out.stderr and "echo deploying" not in out.stdout
    assert copy.log.read_text() == "" and copy.verify()["kind"] == "truncated"
    for path in copy.rotated():  # every record gone: the empty log is not "intact: 0 records"
        path.unlink()
    found = copy.verify()
    expect(found, "truncated", copy.log, 1)
    assert found["message"].startswith("records 1-") and found["records"] == 0, found


def test_tampering_inside_a_rotated_gzipped_file_is_caught_there(copy: Copy):
    first = copy.rotated()[0]
    lines = copy.lines(first)
    lines[2] = lines[2].replace('"event":"', '"event":"x', 1)
    copy.write(lines, first)
    expect(copy.verify(), "altered", first, 3)


def test_a_deleted_rotated_file_is_caught_at_the_next_files_first_record(copy: Copy):
    rotated = copy.rotated()
    assert len(rotated) >= 2, rotated
    rotated[1].unlink()  # a middle file
    after = copy.rotated()[1] if len(rotated) > 2 else copy.log
    found = copy.verify()
    expect(found, "deleted", after, 1)
    rotated[0].unlink()  # the oldest files gone: what retention does, so only noted
    found = copy.verify()
    assert found["code"] == 0 and any("older files removed by retention" in n for n in found["notes"]), found


def test_a_rewritten_chain_without_the_key_is_caught_by_the_signed_checkpoint(copy: Copy):
    """An attacker who edits a record and recomputes every hash after it cannot sign the checkpoints."""
    path, lines, i = copy.records_run()
    prev = json.loads(lines[i])["prev"]
    out = lines[:i]
    checkpoint_line = None
    for n, line in enumerate(lines[i:], i):
        obj = json.loads(line)
        if "checkpoint" in obj:
            obj["checkpoint"]["hash"] = prev  # matches the rewritten chain; the signature cannot follow
            checkpoint_line = checkpoint_line or n + 1
            out.append(json.dumps({"checkpoint": obj["checkpoint"]}))
            continue
        record = {k: v for k, v in obj.items() if k not in ("seq", "prev", "hash")}
        if n == i:
            record["user"] = "mallory"
        text, prev = chain.chained(record, obj["seq"], prev)
        out.append(text)
    copy.write(out, path)
    found = copy.verify()
    expect(found, "altered", path, checkpoint_line)
    assert "bad signature" in found["message"]


def test_verify_exit_codes_for_a_missing_log_and_the_declared_path(copy: Copy):
    out = copy.project.run("audit", "verify", str(copy.root / "nothing.log"))
    assert out.code == 2 and "no audit log at" in out.stderr, out
    out = copy.project.run("audit", "verify")  # the declared file sink's path
    assert out.code == 0 and "intact" in out.stdout, out


def test_a_key_written_twice_in_a_record_is_caught_at_its_line(copy: Copy):
    """Python's parser keeps the last of two equal keys, so the hash matched while a reader
    of the file (grep, a log shipper) saw the first: a record with a key twice is altered."""
    path, lines, i = copy.records_run()
    lines[i + 1] = lines[i + 1].replace("{", '{"user":"mallory",', 1)
    copy.write(lines, path)
    found = copy.verify()
    expect(found, "altered", path, i + 2)
    assert "a key appears twice" in found["message"], found


def test_a_rotated_file_replaced_by_garbage_is_damage_exit_1(copy: Copy):
    """Damage (exit 1), not a log that cannot be read (exit 2): the file is there, its bytes
    are not gzip."""
    first = copy.rotated()[0]
    first.write_bytes(b"garbage")
    found = copy.verify()
    assert found["code"] == 1 and found["ok"] is False and found["kind"] == "damaged", found
    assert str(first) in found["message"], found
