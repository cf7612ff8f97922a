#!/usr/bin/env python3
"""Install the peers Nexus is benchmarked against, each in its own virtual environment.

    python bench/peers.py            # install (or check) every peer, print what is there
    python bench/peers.py --force    # re-create every venv

Each peer lives in ``bench/.peers/<name>/`` (git-ignored), created with ``python -m venv``
and filled with pip from PyPI. Installing is idempotent: a venv whose ``.nexus-bench.json``
stamp matches the requested packages and still runs is left alone. A peer whose install
fails is skipped with a note (the benchmark then reports it as skipped, never as a figure).

The ``tools`` venv is not a peer: it holds matplotlib (the sweep plot) and py-spy (profiles).
GNU make and OpenSSH come from the system (``/usr/bin/make``, ``/usr/bin/ssh``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / ".peers"

#: name -> (pip requirements, the console script that proves the install, version module)
SPECS: dict[str, tuple[list[str], str, str]] = {
    "ansible": (["ansible-core"], "ansible-playbook", "ansible"),
    "pyinfra": (["pyinfra>=3,<4"], "pyinfra", "pyinfra"),
    "fabric": (["fabric"], "fab", "fabric"),
    "invoke": (["invoke"], "invoke", "invoke"),
    "tools": (["matplotlib", "py-spy"], "py-spy", "matplotlib"),
}
STAMP = ".nexus-bench.json"
PIP_TIMEOUT = 900  # seconds for one pip install


@dataclasses.dataclass
class Peer:
    """An installed (or failed) peer venv."""

    name: str
    path: Path
    ok: bool
    version: str = ""
    note: str = ""

    @property
    def bin(self) -> Path:
        """The venv's bin directory."""
        return self.path / "bin"

    @property
    def python(self) -> str:
        """The venv's interpreter."""
        return str(self.bin / "python")

    def script(self, name: str) -> str:
        """A console script of the venv."""
        return str(self.bin / name)


def _log(msg: str) -> None:
    print(f"[peers] {msg}", file=sys.stderr, flush=True)


def _version(python: str, module: str) -> str:
    code = (
        "import importlib.metadata as m, sys\n"
        f"name = {module!r}\n"
        "dist = {'ansible': 'ansible-core'}.get(name, name)\n"
        "print(m.version(dist))\n"
    )
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def ensure_peer(name: str, *, force: bool = False) -> Peer:
    """Create/refresh one peer venv; never raises for an install failure (``ok=False`` + note)."""
    reqs, script, module = SPECS[name]
    path = PEERS_DIR / name
    peer = Peer(name, path, ok=False)
    stamp_file = path / STAMP
    if not force and stamp_file.exists() and (path / "bin" / script).exists():
        try:
            stamp = json.loads(stamp_file.read_text())
        except ValueError:
            stamp = {}
        if stamp.get("requirements") == reqs:
            version = _version(peer.python, module)
            if version:
                peer.ok, peer.version = True, version
                return peer
    if force and path.exists():
        shutil.rmtree(path)
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    try:
        if not (path / "bin" / "python").exists():
            _log(f"creating venv {path}")
            proc = subprocess.run(
                [sys.executable, "-m", "venv", str(path)], capture_output=True, text=True, timeout=300, check=False
            )
            if proc.returncode != 0:
                peer.note = f"python -m venv failed: {(proc.stderr or proc.stdout).strip()[-400:]}"
                return peer
        _log(f"pip install {' '.join(reqs)} into {path}")
        proc = subprocess.run(
            [peer.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *reqs],
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        peer.note = f"pip install {' '.join(reqs)} took longer than {PIP_TIMEOUT}s"
        return peer
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        peer.note = f"pip install {' '.join(reqs)} failed (exit {proc.returncode}):\n{tail}"
        return peer
    if not (path / "bin" / script).exists():
        peer.note = f"installed but {script} is missing from {path / 'bin'}"
        return peer
    peer.version = _version(peer.python, module)
    peer.ok = bool(peer.version)
    if not peer.ok:
        peer.note = f"installed but {module} does not import"
        return peer
    stamp_file.write_text(json.dumps({"requirements": reqs, "version": peer.version}) + "\n")
    return peer


def ensure_all(names: list[str] | None = None, *, force: bool = False) -> dict[str, Peer]:
    """Every requested peer (default: all), installing what is missing."""
    out = {}
    for name in names or list(SPECS):
        peer = ensure_peer(name, force=force)
        if not peer.ok:
            _log(f"SKIP {name}: {peer.note}")
        out[name] = peer
    return out


NEXUS_FILES = ("pyproject.toml", "README.md", "LICENSE", "nexus_core", "plugins/nexus_ssh")


def nexus_frozen(source: str, repo: Path) -> Peer:
    """Nexus (core + nexus-ssh) installed NON-editable into ``bench/.peers/nexus-<source>/``.

    ``source``: ``snapshot`` copies the working tree as it is now (so edits made while the
    benchmark runs cannot change the code under test); ``head`` takes ``git archive HEAD``.
    The copy goes to ``bench/.work/nexus-src-<source>/``; dependencies are installed once,
    the two packages re-installed every time.
    """
    path = PEERS_DIR / f"nexus-{source}"
    peer = Peer(f"nexus-{source}", path, ok=False)
    src = HERE / ".work" / f"nexus-src-{source}"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    try:
        if source == "head":
            archive = subprocess.run(
                ["git", "-C", str(repo), "archive", "HEAD", *NEXUS_FILES],
                capture_output=True, timeout=120, check=False,
            )  # fmt: skip
            if archive.returncode != 0:
                peer.note = f"git archive HEAD failed: {archive.stderr.decode(errors='replace').strip()[-300:]}"
                return peer
            subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True, timeout=120)
        else:
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "tests", ".pytest_cache")
            for name in NEXUS_FILES:
                s, d = repo / name, src / name
                if s.is_dir():
                    shutil.copytree(s, d, ignore=ignore)
                elif s.exists():
                    d.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(s, d)
        if not (path / "bin" / "python").exists():
            _log(f"creating venv {path}")
            subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True, timeout=300)
        pip = [peer.python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        pkgs = [str(src), str(src / "plugins" / "nexus_ssh")]
        if not (path / "bin" / "nexus").exists():
            _log(f"pip install nexus-core nexus-ssh (with dependencies) into {path}")
            proc = subprocess.run([*pip, *pkgs], capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
        else:
            _log(f"pip install ({source}) nexus-core nexus-ssh into {path}")
            proc = subprocess.run(
                [*pip, "--force-reinstall", "--no-deps", *pkgs],
                capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False,
            )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        peer.note = f"could not prepare Nexus ({source}): {exc}"
        return peer
    if proc.returncode != 0:
        peer.note = f"pip install of Nexus ({source}) failed:\n{_tail(proc.stdout + proc.stderr)}"
        return peer
    peer.ok = (path / "bin" / "nexus").exists()
    peer.version = _version(peer.python, "nexus-core")
    if not peer.ok:
        peer.note = "installed but bin/nexus is missing"
    return peer


def ensure_rsync() -> str:
    """The path of ``rsync`` (a peer of W9/W10), installed with apt when missing and root; "" if none."""
    found = shutil.which("rsync")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found or ""
    _log("installing rsync (apt-get) for the file workloads")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "rsync"]):
        if subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600).returncode != 0:
            return ""
    return shutil.which("rsync") or ""


def _tail(text: str, n: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def system_tools() -> dict[str, str]:
    """Versions of the system tools used as peers (make, ssh); empty string when missing."""
    out = {}
    for name, args in (("make", ["make", "--version"]), ("ssh", ["ssh", "-V"])):
        exe = shutil.which(args[0])
        if exe is None:
            out[name] = ""
            continue
        proc = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        out[name] = ((proc.stdout or proc.stderr).splitlines() or [""])[0].strip()
    return out


def main() -> None:
    """Install every peer and print a summary."""
    peers = ensure_all(force="--force" in sys.argv)
    for peer in peers.values():
        state = f"ok {peer.version}" if peer.ok else f"SKIPPED: {peer.note}"
        print(f"{peer.name:8} {state}")
    for name, version in system_tools().items():
        print(f"{name:8} {version or 'MISSING'}")
    sys.exit(0 if all(p.ok for p in peers.values()) else 1)


if __name__ == "__main__":
    os.chdir(HERE.parent)
    main()
