"""A series of small files goes to a host as one tar stream, and over SFTP when it cannot.

In-process, against the sshd bed: the executor's ``send_files`` primitive (what a tree
upload uses) with the bed's GNU tar, then with a host side that is not GNU tar, a stream
that fails (a folder the login user cannot write), a local file that cannot be read and a
run that is stopping. Whatever the path, each file ends with its content, mode and time,
or with its own error.
"""

from __future__ import annotations

import os
import pwd
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nexus_core.api import Cancel, SmallFile
from nexus_core.model import Host
from nexus_core.testing.sshbed import USER_KEY, SshBed

from nexus_ssh import transfer

pytestmark = pytest.mark.ssh  # file transfer: runs once (not per session mode)

#: Names a tar header must carry whole: long, non-ASCII, a backslash, a newline, spaces.
NAMES = ["plain.txt", "é-ü.txt", "back\\slash", "new\nline", "with space", "x" * 150]
NAMES += [f"f{i}" for i in range(10)]


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder on the bed's machine that the login user owns (removed after)."""
    path = Path(f"/tmp/nexus-tar-{uuid.uuid4().hex[:8]}")
    path.mkdir()
    shutil.chown(path, USER_KEY, USER_KEY)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def host(sshbed: SshBed) -> Host:
    return Host(sshbed.hosts[0].address, user=USER_KEY, port=sshbed.port)


def _sources(tmp_path: Path) -> list[Path]:
    src = tmp_path / "src"
    src.mkdir()
    paths = []
    for i, name in enumerate(NAMES):
        path = src / name
        path.write_bytes(os.urandom(i * 700))  # 0 bytes to ~11 KB: no, one and several tar blocks
        paths.append(path)
    return paths


def _series(sources: list[Path], dest: Path) -> list[SmallFile]:
    return [
        SmallFile(str(p), str(dest / p.name), 0o640 if i % 2 else 0o755, 1_600_000_000 + i)
        for i, p in enumerate(sources)
    ]


def _spy(ex: Any) -> list[int]:
    """Record how many files each call of the SFTP path was given (our own method, wrapped)."""
    calls: list[int] = []
    sftp_files: Callable[..., Any] = ex._sftp_files

    def counted(host: Host, files: list[SmallFile], cancel: Cancel | None = None) -> Any:
        calls.append(len(files))
        return sftp_files(host, files, cancel)

    ex._sftp_files = counted
    return calls


def _arrived(files: list[SmallFile]) -> None:
    for f in files:
        st = os.stat(f.remote_path)
        assert Path(f.remote_path).read_bytes() == Path(f.local_path).read_bytes(), f.remote_path
        assert (st.st_mode & 0o7777, int(st.st_mtime)) == (f.mode, f.mtime), f.remote_path
        user = pwd.getpwnam(USER_KEY)
        assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid), f.remote_path


def test_a_series_goes_as_one_tar_stream_with_content_mode_and_time(
    make_executor: Any, host: Host, folder: Path, tmp_path: Path
) -> None:
    ex, _ = make_executor()
    calls = _spy(ex)
    files = _series(_sources(tmp_path), folder)
    files.append(SmallFile(files[0].local_path, str(folder / "no-mode"), None, None))  # SFTP's
    with ex.file_session(host):
        assert ex.send_files(host, files) == [None] * len(files)
    assert calls == [1]  # only the file without mode and time went over SFTP
    _arrived(files[:-1])
    assert (folder / "no-mode").read_bytes() == Path(files[0].local_path).read_bytes()
    # Written again (a new series replaces what is there, as SFTP's truncating open does).
    Path(files[1].local_path).write_bytes(b"changed")
    with ex.file_session(host):
        assert ex.send_files(host, files[:-1]) == [None] * (len(files) - 1)
    assert Path(files[1].remote_path).read_bytes() == b"changed"


def test_a_host_without_gnu_tar_gets_sftp_for_the_series_and_from_then_on(
    make_executor: Any, host: Host, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex, _ = make_executor()
    monkeypatch.setattr(ex, "_no_tar", set())  # this executor's own record
    # What the host's side answers when its tar is BusyBox's or bsdtar (not GNU tar).
    monkeypatch.setattr(transfer, "TAR_EXTRACT", f"cat >/dev/null; exit {transfer._NOT_GNU_TAR}")
    calls = _spy(ex)
    files = _series(_sources(tmp_path), folder)
    with ex.file_session(host):
        assert ex.send_files(host, files) == [None] * len(files)
        assert ex.send_files(host, files) == [None] * len(files)
    assert calls == [len(files), len(files)] and host.key in ex._no_tar
    _arrived(files)


def test_a_failed_stream_leaves_each_file_to_sftp_which_names_its_error(
    make_executor: Any, host: Host, folder: Path, tmp_path: Path
) -> None:
    ex, _ = make_executor()
    calls = _spy(ex)
    locked = folder / "locked"
    locked.mkdir(mode=0o555)
    shutil.chown(locked, "root", "root")
    sources = _sources(tmp_path)
    files = _series(sources, folder)[:8] + _series(sources, locked)[8:]
    with ex.file_session(host):
        outcomes = ex.send_files(host, files)
    assert calls == [len(files)]  # tar failed on the locked folder: the whole series went over SFTP
    assert outcomes[:8] == [None] * 8
    assert all(isinstance(o, PermissionError) for o in outcomes[8:]), outcomes
    _arrived(files[:8])
    assert not list(locked.iterdir())


def test_an_unreadable_source_is_its_own_error_and_a_stopping_run_sends_nothing_more(
    make_executor: Any, host: Host, folder: Path, tmp_path: Path
) -> None:
    ex, _ = make_executor()
    calls = _spy(ex)
    files = _series(_sources(tmp_path), folder)
    gone = files[3]
    os.remove(gone.local_path)
    with ex.file_session(host):
        outcomes = ex.send_files(host, files)
    assert calls == [] and isinstance(outcomes[3], FileNotFoundError), outcomes
    assert all(o is None for i, o in enumerate(outcomes) if i != 3)
    assert not os.path.exists(gone.remote_path)
    _arrived([f for f in files if f is not gone])
    cancel = Cancel()
    cancel.raise_to(Cancel.INTERRUPT)
    (tmp_path / "again").mkdir()
    again = _series(_sources(tmp_path / "again"), folder / "again")
    (folder / "again").mkdir()
    shutil.chown(folder / "again", USER_KEY, USER_KEY)
    with ex.file_session(host):
        outcomes = ex.send_files(host, again, cancel)
    assert all(isinstance(o, transfer.TransferInterrupted) for o in outcomes), outcomes
    assert not list((folder / "again").iterdir())


def test_headers_are_built_once_for_hosts_with_folders_and_tags_of_their_own(
    make_executor: Any, sshbed: SshBed, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each host's files sit under a folder of its own (``tar --directory``) and carry its tag
    (``-TAG.part``, added by ``tar --transform``): the headers, relative and untagged, are
    the same for every host and built once."""
    sources = _sources(tmp_path)
    ex, _ = make_executor()
    hosts = [Host(h.address, user=USER_KEY, port=sshbed.port) for h in sshbed.hosts[:2]]
    series = []
    for n, tag in enumerate(("0a1b2c3d", "4e5f6a7b")):
        (folder / f"h{n}" / "sub").mkdir(parents=True)
        shutil.chown(folder / f"h{n}" / "sub", USER_KEY, USER_KEY)
        shutil.chown(folder / f"h{n}", USER_KEY, USER_KEY)
        series.append([
            SmallFile(str(p), f"{folder}/h{n}/{'sub/' * (i % 2)}.{p.name}.nexus-0123456789ab-{tag}.part",
                      0o640, 1_600_000_000)
            for i, p in enumerate(sources)
        ])  # fmt: skip
    headers = transfer._Headers(transfer.HEADER_CACHE_BYTES)
    monkeypatch.setattr(transfer, "_HEADERS", headers)
    for host, files in zip(hosts, series, strict=True):
        with ex.file_session(host):
            assert ex.send_files(host, files) == [None] * len(files)
        _arrived(files)
    assert len(headers.items) == len(sources)
    assert not any(name.endswith(".part") or name.startswith("/") for name, *_ in headers.items)


def test_a_series_layout_is_cut_at_a_slash_and_keeps_odd_paths_whole() -> None:
    tag = "-0a1b2c3d.part"
    assert transfer._layout([f"/srv/app/a{tag}", f"/srv/app/b/c{tag}"]) == ("/srv/app", tag, ["a", "b/c"])
    assert transfer._layout([f"/srv/ab{tag}", f"/srv/ac{tag}"]) == ("/srv", tag, ["ab", "ac"])
    assert transfer._layout([f"/a{tag}", f"/b{tag}"]) == ("/", tag, ["a", "b"])
    assert transfer._layout(["x.part", "y"]) == ("", "", ["x.part", "y"])
    assert transfer._layout(["app/./x", "app/./y-0a1b2c3d.part"]) == ("app/.", "", ["x", "y-0a1b2c3d.part"])
    mixed = ["/x/a-4e5f6a7b.part", f"/x/b{tag}"]
    assert transfer._layout(mixed) == ("/x", "", ["a-4e5f6a7b.part", f"b{tag}"])
