#!/usr/bin/env python3
"""Cost of ``secret()``: a pipeline that uses 50 secrets of the local store.

Measured on this machine, median of several rounds after a warm-up:

- in process: reading the store, unlocking it once (HKDF; with a passphrase store, Argon2id
  once), then resolving each of the 50 secrets (per-secret cost in microseconds), and the
  cost of redacting an output line once 50 values are registered;
- end to end: ``nexus run`` of one task whose 50 commands each use one secret, against the
  same pipeline with the values written in literally (the difference per secret is what
  ``secret()`` adds: decryption, registration, redaction of every event and line).

Results go to ``bench/results/secrets.{json,md}``. Usage: ``python bench/secrets.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
COUNT = 50
KEY = base64.b64encode(os.urandom(32)).decode()


def nexus_cmd() -> list[str]:
    script = Path(sys.executable).parent / "nexus"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nexus_core"]


def median_ms(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples) * 1000, "min": min(samples) * 1000, "max": max(samples) * 1000}


def make_stores(data: Path) -> tuple[str, str]:
    """A key store and a passphrase store with COUNT secrets each."""
    from nexus_core.secrets.store import MasterKey, Store, derive_passphrase, key_from_text, passphrase_params

    keyed = Store(str(data / "keyed.enc"))
    keyed.create(key_from_text(KEY, "bench"))
    params = passphrase_params()
    phrase = Store(str(data / "phrase.enc"))
    phrase.create(MasterKey(derive_passphrase("bench passphrase", params), "bench"), params)
    for store in (keyed, phrase):
        for i in range(COUNT):
            store.put(f"S{i}", f"value-{i:02d}-{os.urandom(8).hex()}")
        store.save()
    return keyed.path, phrase.path


def in_process(keyed: str, phrase: str, rounds: int) -> dict[str, object]:
    from nexus_core.secrets.redact import Redactor
    from nexus_core.secrets.store import MasterKey, Store, derive_passphrase, key_from_text

    unlock, per_secret, argon = [], [], []
    for _ in range(rounds + 1):
        t0 = time.perf_counter()
        store = Store.read(keyed)
        store.unlock(key_from_text(KEY, "bench"))
        t1 = time.perf_counter()
        values = [store.get(f"S{i}") for i in range(COUNT)]
        t2 = time.perf_counter()
        unlock.append(t1 - t0)
        per_secret.append((t2 - t1) / COUNT)
        s2 = Store.read(phrase)
        assert s2.doc is not None
        t3 = time.perf_counter()
        s2.unlock(MasterKey(derive_passphrase("bench passphrase", dict(s2.doc["kdf_params"])), "bench"))
        argon.append(time.perf_counter() - t3)
    imports = []
    crypto = (
        "from cryptography.hazmat.primitives.ciphers.aead import AESGCM; "
        "from cryptography.hazmat.primitives.kdf.hkdf import HKDF"
    )
    for _ in range(rounds + 1):
        times = []
        for code in ("pass", crypto):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - t0)
        imports.append(times[1] - times[0])
    redactor = Redactor()
    for v in values:
        redactor.add(v)
    line = "2026-12-01 deploy step 17 of 40: copied 1234 files to /srv/app/releases/20261201 (ok)"
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        redactor.text(line)
    redact_us = (time.perf_counter() - t0) / n * 1e6
    return {
        "read_and_unlock_ms": median_ms(unlock[1:]),
        "per_secret_us": statistics.median(per_secret[1:]) * 1e6,
        "argon2id_unlock_ms": median_ms(argon[1:]),
        "redact_line_us_with_50_values": redact_us,
        "import_cryptography_ms": statistics.median(imports[1:]) * 1000,
    }


PIPELINE = """
from nexus_core import run, secret, task

@task
def deploy():
    for i in range({count}):
        run("echo step {{}} {{}}".format(i, {value}))
"""


def end_to_end(data: Path, keyed: str, rounds: int) -> dict[str, object]:
    from nexus_core.secrets.store import Store, key_from_text

    store = Store.read(keyed)
    store.unlock(key_from_text(KEY, "bench"))
    literal = {f"S{i}": store.get(f"S{i}") for i in range(COUNT)}
    project = data / "project"
    project.mkdir()
    env = {
        **os.environ,
        "NEXUS_MASTER_KEY": KEY,
        "NEXUS_SECRETS_FILE": keyed,
        "XDG_STATE_HOME": str(data / "state"),
        "XDG_CACHE_HOME": str(data / "cache"),
        "XDG_DATA_HOME": str(data / "data"),
        "NO_COLOR": "1",
        "CI": "1",
    }
    variants = {
        "secret()": PIPELINE.format(count=COUNT, value='secret(f"S{i}")'),
        "literal": PIPELINE.format(count=COUNT, value=f"{json.dumps(literal)}[f'S{{i}}']"),
    }
    out: dict[str, object] = {}
    for name, source in variants.items():
        (project / "nexusfile.py").write_text(source)
        samples = []
        for _ in range(rounds + 1):
            t0 = time.perf_counter()
            proc = subprocess.run([*nexus_cmd(), "run", "deploy", "--no-resume"], cwd=project, env=env,
                                  capture_output=True, text=True, check=False)  # fmt: skip
            samples.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise SystemExit(f"{name}: nexus run failed: {proc.stderr}")
            assert literal["S0"] not in proc.stdout + proc.stderr or name == "literal"
        out[name] = median_ms(samples[1:])
    diff = out["secret()"]["median"] - out["literal"]["median"]  # type: ignore[index]
    out["per_secret_us"] = diff / COUNT * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from bench.run import compile_sources

    compile_sources()  # timed runs must not compile modules (PYTHONDONTWRITEBYTECODE)
    with tempfile.TemporaryDirectory(prefix="nexus-bench-secrets-") as tmp:
        data = Path(tmp)
        keyed, phrase = make_stores(data)
        results = {
            "secrets": COUNT,
            "rounds": args.rounds,
            "in_process": in_process(keyed, phrase, args.rounds),
            "nexus_run": end_to_end(data, keyed, args.rounds),
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "secrets.json").write_text(json.dumps(results, indent=2) + "\n")
    ip, e2e = results["in_process"], results["nexus_run"]
    md = [
        f"# secret() cost: one task, {COUNT} commands, one secret each ({args.rounds} rounds, median)",
        "",
        "| what | figure |",
        "|---|---|",
        f"| read + unlock the store (key, HKDF) | {ip['read_and_unlock_ms']['median']:.2f} ms |",  # type: ignore[index]
        f"| unlock with a passphrase (Argon2id t=3, 64 MiB, p=4), once per run | "
        f"{ip['argon2id_unlock_ms']['median']:.0f} ms |",  # type: ignore[index]
        f"| import `cryptography` (AES-GCM, HKDF), once per run that uses a secret | "
        f"{ip['import_cryptography_ms']:.0f} ms |",
        f"| decrypt one secret | {ip['per_secret_us']:.1f} µs |",
        f"| redact one output line, 50 values registered | {ip['redact_line_us_with_50_values']:.2f} µs |",
        f"| `nexus run` with secret() | {e2e['secret()']['median']:.0f} ms |",  # type: ignore[index]
        f"| `nexus run` with the values written literally | {e2e['literal']['median']:.0f} ms |",  # type: ignore[index]
        f"| end-to-end cost per secret (difference / {COUNT}) | {e2e['per_secret_us']:.0f} µs |",
        "",
    ]
    (RESULTS / "secrets.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
