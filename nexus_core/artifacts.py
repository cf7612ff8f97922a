"""Artifacts: files a task produces, handed to every task that depends on it.

``artifact("dist/*.whl")`` in a task body declares files (a path, a glob, or a folder: all
the files under it) relative to the task's working folder: the nexusfile's folder for a
local task, the login folder on a host. After the task succeeded everywhere, its files are
collected into the run's store, ``$XDG_DATA_HOME/nexus/artifacts/RUN_ID/TASK/PATH``
(streamed in chunks with their sha256, never read whole into memory; from a task on several
hosts each path is taken from the first host, in plan order, that has it). Before the first
command of each task that depends on it, directly or through other tasks, they are put at
the same relative path: in the nexusfile's folder for a local task, in the login folder of
each host for a remote one (files already there with the same sha256 are left alone).

The store of a run is kept after a failed or interrupted run (a resume finds it) and removed
when the run succeeds, unless ``config(artifact_retention=DAYS)`` keeps successful runs'
artifacts that many days. ``nexus artifacts [RUN_ID]`` lists them.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nexus_core.model import Command, Host
from nexus_core.options import safe_repr

CHUNK = 1 << 20
#: The per-run manifest: one entry per collected file.
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact(Command):
    """A recorded ``artifact(path_or_glob)``: a declaration taken out of the task's operations
    by the planner (:attr:`~nexus_core.plan.HostPlan.artifacts`); ``cmd`` holds the path."""


@dataclass(frozen=True)
class Entry:
    """One collected file: the task and host it came from, its relative path, size and sha256."""

    task: str
    host: str
    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {"task": self.task, "host": self.host, "path": self.path, "size": self.size, "sha256": self.sha256}


class ArtifactError(Exception):
    """Artifacts could not be collected or delivered; the message names task, host and path."""


# --- the nexusfile function ----------------------------------------------------------------


def artifact(path_or_glob: str) -> None:
    """Declare files this task produces, for the tasks that depend on it: ``artifact("dist/*.whl")``.

    A path, a glob (``*``, ``?``, ``[...]``) or a folder, relative to the task's working folder.
    """
    from nexus_core import dsl

    rec = dsl._RECORDER.get()
    if rec is None:
        if dsl._PROJECT.get() is not None:
            dsl._problem("artifact() is called outside a task body", "put it inside a function decorated with @task")
            return
        raise dsl.NexusfileError("artifact() can only be called inside a task body, while Nexus plans a run")
    why = path_problem(path_or_glob)
    if why:
        dsl._problem(
            f"artifact({safe_repr(path_or_glob)}): {why}",
            'give a path relative to the task\'s working folder, e.g. artifact("dist/*.whl")',
            "bad-value",
        )
        return
    rec.commands.append(Artifact(cmd=os.path.normpath(path_or_glob), line=dsl._caller(rec.project).line))


def path_problem(path: Any) -> str | None:
    """Why ``path`` cannot be an artifact path (None when it can)."""
    if not isinstance(path, str) or not path.strip():
        return "needs a non-empty path string"
    if "\0" in path or "\n" in path:
        return "the path holds a NUL or newline character"
    if os.path.isabs(path) or path.startswith("~"):
        return "the path must be relative (dependent tasks find the files at the same relative path)"
    if ".." in path.replace("\\", "/").split("/"):
        return "the path must stay inside the working folder (no '..')"
    return None


# --- where artifacts live ------------------------------------------------------------------


def store_root() -> str:
    """``$XDG_DATA_HOME/nexus/artifacts``."""
    from nexus_core.state.paths import data_dir

    return os.path.join(data_dir(), "artifacts")


def run_dir(run_id: str) -> str:
    """The folder of one run's artifacts."""
    return os.path.join(store_root(), run_id)


def read_manifest(run_id: str) -> list[Entry]:
    """The files collected by run ``run_id`` (empty when none), later entries replacing earlier ones."""
    try:
        with open(os.path.join(run_dir(run_id), MANIFEST), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return []
    found: dict[tuple[str, str], Entry] = {}
    for item in data.get("files", []) if isinstance(data, dict) else []:
        try:
            e = Entry(str(item["task"]), str(item["host"]), str(item["path"]), int(item["size"]), str(item["sha256"]))
        except (KeyError, TypeError, ValueError):
            continue
        found[(e.task, e.path)] = e
    return list(found.values())


def run_info(run_id: str) -> dict[str, Any]:
    """What the manifest says about the run besides its files (``status``, ``updated``)."""
    try:
        with open(os.path.join(run_dir(run_id), MANIFEST), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if k != "files"} if isinstance(data, dict) else {}


def runs() -> list[str]:
    """Run ids that have an artifact folder, newest first."""
    try:
        names = [n for n in os.listdir(store_root()) if os.path.isdir(os.path.join(store_root(), n))]
    except OSError:
        return []
    return sorted(names, reverse=True)


def sha256_file(path: str) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def copy_hashed(src: str, dest: str) -> tuple[int, str]:
    """Copy ``src`` to ``dest`` in chunks through a temporary file renamed into place; (size, sha256)."""
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(prefix=".nexus-", dir=os.path.dirname(dest) or ".")
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            for chunk in iter(lambda: fin.read(CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
                fout.write(chunk)
        shutil.copymode(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return size, digest.hexdigest()


def _glob_words(pattern: str) -> str:
    """``pattern`` for a POSIX shell: literal parts quoted, glob characters (``*?[...]``) left to expand."""
    out: list[str] = []
    for part in re.split(r"(\*|\?|\[[^\]/]+\])", pattern):
        if not part:
            continue
        out.append(part if part in ("*", "?") or (part.startswith("[") and part.endswith("]")) else shlex.quote(part))
    return "".join(out)


def _local_matches(root: str, pattern: str) -> list[str]:
    found: list[str] = []
    for match in sorted(glob.glob(os.path.join(root, pattern))):
        if os.path.isdir(match):
            for folder, _dirs, files in sorted(os.walk(match)):
                found.extend(os.path.join(folder, f) for f in sorted(files))
        elif os.path.isfile(match):
            found.append(match)
    return [os.path.relpath(p, root) for p in found]


# --- the run's store -----------------------------------------------------------------------


class RunArtifacts:
    """Collects and delivers one run's artifacts (thread-safe: tasks run in parallel)."""

    def __init__(self, run_id: str, root: str, emit: Any = None) -> None:
        self.run_id = run_id
        self.root = root
        self.dir = run_dir(run_id)
        self._lock = threading.Lock()
        self._emit = emit

    # --- manifest ----------------------------------------------------------------------------

    def entries(self, tasks: Iterable[str] | None = None) -> list[Entry]:
        """The collected files, of ``tasks`` only when given."""
        wanted = None if tasks is None else set(tasks)
        return [e for e in read_manifest(self.run_id) if wanted is None or e.task in wanted]

    def _record(self, new: Sequence[Entry], status: str | None = None, extra: dict[str, Any] | None = None) -> None:
        with self._lock:
            current = {(e.task, e.path): e for e in read_manifest(self.run_id)}
            for e in new:
                current[(e.task, e.path)] = e
            info = run_info(self.run_id)
            info.update({"run_id": self.run_id, "updated": time.time(), **(extra or {})})
            if status:
                info["status"] = status
            data = {**info, "files": [e.to_dict() for e in current.values()]}
            os.makedirs(self.dir, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=self.dir)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
            os.replace(tmp, os.path.join(self.dir, MANIFEST))

    def finish(self, status: str, retention_days: float, failed_days: float | None = None) -> None:
        """At the end of the run: note its status and how long its project keeps it (the store
        is shared by every project: :func:`prune` keeps each run as its own project says);
        after success remove its store unless retained."""
        if not os.path.isdir(self.dir):
            return
        if status == "ok" and retention_days <= 0:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            keep = {"retention_days": retention_days}
            if failed_days is not None:
                keep["failed_days"] = failed_days
            self._record((), status, keep)

    # --- collecting ----------------------------------------------------------------------------

    def collect(
        self, task: str, sources: Sequence[tuple[Host, Sequence[str]]], executor_for: Any, cancel: Any
    ) -> list[Entry]:
        """Copy the files of ``task`` (which succeeded on every host) into the store.

        ``sources``: each host of the task with its artifact paths; ``executor_for(host)``
        gives its executor. A path is taken from the first host that has it. Raises
        :class:`ArtifactError` when a pattern matches no file on a host.
        """
        have: set[str] = set()
        entries: list[Entry] = []
        for host, patterns in sources:
            executor = executor_for(host)
            for pattern in patterns:
                if host.is_local:
                    paths = _local_matches(self.root, pattern)
                else:
                    paths = self._remote_matches(host, pattern, executor, cancel)
                if not paths:
                    where = "in " + self.root if host.is_local else f"on {host.label} (relative to the login folder)"
                    raise ArtifactError(f"artifact({pattern!r}) of task {task!r} matched no file {where}")
                for rel in paths:
                    if rel in have:
                        continue
                    have.add(rel)
                    dest = os.path.join(self.dir, task, rel)
                    if host.is_local:
                        size, sha = copy_hashed(os.path.join(self.root, rel), dest)
                    else:
                        size, sha = self._fetch(host, rel, dest, executor, cancel)
                    entries.append(Entry(task, host.label, rel, size, sha))
        self._record(entries)
        return entries

    def _remote_matches(self, host: Host, pattern: str, executor: Any, cancel: Any) -> list[str]:
        script = (
            f"for p in {_glob_words(pattern)}; do "
            'if [ -d "$p" ]; then find "$p" -type f; elif [ -f "$p" ]; then printf "%s\\n" "$p"; fi; done'
        )
        lines: list[str] = []
        result = executor.run(host, Command(script, timeout=60), lambda _s, line: lines.append(line), cancel, 60.0)
        if not result.ok:
            raise ArtifactError(f"could not list artifact({pattern!r}) on {host.label}: {result.reason}")
        return sorted(dict.fromkeys(os.path.normpath(line) for line in lines if line.strip()))

    def _fetch(self, host: Host, rel: str, dest: str, executor: Any, cancel: Any = None) -> tuple[int, str]:
        """Download one file, verified by sha256 and renamed into place (nexus_core.transfer.fetch)."""
        from nexus_core import transfer

        try:
            result = transfer.fetch(executor, host, rel, dest, cancel=cancel)
        except NotImplementedError:  # an executor with put/get only: a plain copy, then its sha256
            return self._fetch_plain(host, rel, dest, executor)
        if not result.ok:
            raise ArtifactError(f"could not download artifact {rel} from {host.label}: {result.reason}")
        return os.path.getsize(dest), result.sha256 or sha256_file(dest)

    def _fetch_plain(self, host: Host, rel: str, dest: str, executor: Any) -> tuple[int, str]:
        fd, tmp = tempfile.mkstemp(prefix=".nexus-", dir=os.path.dirname(dest))
        os.close(fd)
        try:
            executor.get(host, rel, tmp)
            os.replace(tmp, dest)
        except Exception as exc:
            raise ArtifactError(f"could not download artifact {rel} from {host.label}: {exc}") from exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return os.path.getsize(dest), sha256_file(dest)

    # --- delivering ----------------------------------------------------------------------------

    def deliver(self, entries: Sequence[Entry], host: Host, executor: Any, cancel: Any) -> tuple[int, int]:
        """Put ``entries`` at their relative paths on ``host``; (files written, files already there)."""
        if not entries:
            return 0, 0
        if host.is_local:
            return self._deliver_local(entries)
        return self._deliver_remote(entries, host, executor, cancel)

    def _source(self, e: Entry) -> str:
        path = os.path.join(self.dir, e.task, e.path)
        if not os.path.isfile(path):
            raise ArtifactError(
                f"artifact {e.path} of task {e.task!r} is missing from the store ({path})",
            )
        return path

    def _deliver_local(self, entries: Sequence[Entry]) -> tuple[int, int]:
        written = same = 0
        for e in entries:
            target = os.path.join(self.root, e.path)
            if os.path.isfile(target) and os.path.getsize(target) == e.size and sha256_file(target) == e.sha256:
                same += 1
                continue
            copy_hashed(self._source(e), target)
            written += 1
        return written, same

    def _deliver_remote(self, entries: Sequence[Entry], host: Host, executor: Any, cancel: Any) -> tuple[int, int]:
        paths = [e.path for e in entries]
        folders = sorted({os.path.dirname(p) for p in paths if os.path.dirname(p)})
        script = ""
        if folders:
            script += "mkdir -p -- " + " ".join(shlex.quote(f) for f in folders) + " && "
        script += (
            "for f in " + " ".join(shlex.quote(p) for p in paths) + '; do if [ -f "$f" ]; then '
            'sha256sum -- "$f" 2>/dev/null || true; fi; done'
        )
        lines: list[str] = []
        result = executor.run(host, Command(script, timeout=120), lambda _s, line: lines.append(line), cancel, 120.0)
        if not result.ok:
            raise ArtifactError(f"could not prepare artifact folders on {host.label}: {result.reason}")
        remote: dict[str, str] = {}
        for line in lines:
            digest, _, name = line.partition("  ")
            if name:
                remote[name] = digest
        from nexus_core import transfer

        todo = [e for e in entries if remote.get(e.path) != e.sha256]
        writes = [transfer.file_write(self._source(e), e.path) for e in todo]
        if writes:  # verified by sha256, written beside the destination and renamed into place
            try:
                results = transfer.write_files(executor, host, writes, cancel=cancel)
            except NotImplementedError:  # an executor with put/get only: a plain copy of each file
                for e in todo:
                    try:
                        executor.put(host, self._source(e), e.path)
                    except Exception as exc:
                        raise ArtifactError(f"could not upload artifact {e.path} to {host.label}: {exc}") from exc
                return len(todo), len(entries) - len(todo)
            except Exception as exc:
                raise ArtifactError(f"could not upload artifacts to {host.label}: {exc}") from exc
            bad = [r for r in results if not r.ok]
            if bad:
                raise ArtifactError(f"could not upload artifact {bad[0].path} to {host.label}: {bad[0].reason}")
        return len(writes), len(entries) - len(writes)


def clash(entries: Sequence[Entry]) -> str:
    """Why ``entries`` (the artifacts one task gets) cannot all be delivered: a path collected
    from two tasks with different bytes (which one arrived would depend on which task finished
    last); "" when none."""
    seen: dict[str, Entry] = {}
    for e in entries:
        other = seen.setdefault(e.path, e)
        if other.task != e.task and other.sha256 != e.sha256:
            first, second = sorted((other.task, e.task))
            return (f"artifact {e.path} comes from tasks {first!r} and {second!r} with different content; "
                    "give each task's artifact a path of its own")  # fmt: skip
    return ""


def upstream(tasks: Mapping[str, Any], name: str) -> list[str]:
    """Every task ``name`` depends on, directly or through other tasks (plan order not implied)."""
    seen: list[str] = []
    stack = list(tasks[name].deps) if name in tasks else []
    while stack:  # bounded by the number of tasks: each is visited once
        dep = stack.pop()
        if dep in seen or dep not in tasks:
            continue
        seen.append(dep)
        stack.extend(tasks[dep].deps)
    return seen


def prune(retention_days: float, failed_days: float, now: float | None = None) -> int:
    """Remove stores of successful runs older than their retention and of others older than
    their failed runs' retention (by last update); return how many were removed. Each run is
    kept as long as its own project said when it ended (the store is shared by every project);
    ``retention_days`` and ``failed_days`` stand for runs that recorded neither."""
    now = time.time() if now is None else now
    removed = 0
    for rid in runs():
        info = run_info(rid)
        updated = float(info.get("updated") or 0) or _mtime(run_dir(rid))
        own, own_failed = _days(info, "retention_days", retention_days), _days(info, "failed_days", failed_days)
        keep = own if info.get("status") == "ok" else max(own_failed, own)
        if info.get("status") in (None, "running"):
            keep = max(own_failed, own)
        if now - updated > keep * 86400:
            shutil.rmtree(run_dir(rid), ignore_errors=True)
            removed += 1
    return removed


def _days(info: dict[str, Any], key: str, default: float) -> float:
    """A run's own retention in days from its manifest, ``default`` when it has none."""
    value = info.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else default


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return time.time()
