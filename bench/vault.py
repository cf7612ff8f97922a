#!/usr/bin/env python3
"""nexus-vault benchmark: a Vault-backed run against the local Vault server of the tests.

No Vault can be installed here; the server is ``plugins/nexus_vault/tests/vaultfake.py``
(Vault's HTTP API on 127.0.0.1, driven by the unmodified hvac client), so the figures
measure Nexus's side (login, requests, hvac, redaction), not a real Vault's latency.

- **in-process**: the ``vault`` backend resolving N secrets (N paths) with one AppRole login,
  against the Ansible-lookup pattern of one fresh client and login per secret
  (community.hashi_vault#104), and the same N secrets read twice (the run's memo).
- **CLI**: ``nexus run`` of a nexusfile whose local task uses N ``secret("vault:...")`` values
  in ``env=``, against the same nexusfile with plain strings: the difference is the cost of
  the secrets (login, N reads, redaction), per secret in milliseconds.
- **dead Vault**: a server that accepts connections and never answers, ``vault_timeout=1``,
  ``vault_retries=1``: how long N secrets take to fail (the circuit breaker makes it one
  timeout per attempt, not one per secret).

Results: bench/results/vault.{json,md}. ``--quick``: fewer rounds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
# Run as a script, this folder comes first on sys.path, and its secrets.py (the secrets
# benchmark) would stand in for the standard library's secrets module that the fake Vault
# and nexus-vault import: take the folder out.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT / "plugins" / "nexus_vault" / "tests"))

from vaultfake import VaultFake, blackhole  # noqa: E402

N = 50


def summary(values: list[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def backend(config: dict[str, object], cache: str) -> object:
    """A fresh ``vault`` backend, as the core creates it for a run."""
    from nexus_vault.backend import VaultBackend

    from nexus_core.plugin import SecretContext

    made = VaultBackend(SecretContext(config=config, root=cache, cache_dir=cache, warn=lambda _m: None))
    made.name = "vault"  # type: ignore[misc]  # set from the registration in a real run
    return made


def in_process(fake: VaultFake, runs: int, cache: str) -> dict[str, dict[str, float]]:
    """One login for N secrets, against one login per secret."""
    import hvac

    config = {"vault_addr": fake.url, "vault_auth": "approle", "vault_role_id": "bench", "vault_secret_id": "s"}
    refs = [f"secret/app/s{i}#value" for i in range(N)]
    ours, naive, again = [], [], []
    for _ in range(runs):
        logins = fake.logins
        b = backend(config, cache)
        start = time.perf_counter()
        for ref in refs:
            b.resolve(ref)  # type: ignore[attr-defined]
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        for ref in refs:
            b.resolve(ref)  # type: ignore[attr-defined]
        again.append(time.perf_counter() - start)
        b.close()  # type: ignore[attr-defined]
        assert fake.logins == logins + 1, "one login per run"
        start = time.perf_counter()
        for i in range(N):
            client = hvac.Client(url=fake.url)
            client.auth.approle.login(role_id="bench", secret_id="s")
            client.secrets.kv.v2.read_secret_version(path=f"app/s{i}", raise_on_deleted_version=True)
            client.adapter.close()
        naive.append(time.perf_counter() - start)
    return {
        f"backend: 1 login + {N} secrets": summary(ours),
        f"backend: the same {N} secrets again (memo)": summary(again),
        f"one client + login per secret ({N})": summary(naive),
    }


def nexusfile(with_secrets: bool) -> str:
    """A local task with N values in env=, from Vault or plain strings."""
    value = (lambda i: f'secret("vault:secret/app/s{i}#value")') if with_secrets else (lambda i: f'"v{i}"')
    env = ", ".join(f'"S{i}": {value(i)}' for i in range(N))
    return (
        "from nexus_core import config, run, secret, task\n"
        "config(vault_auth='approle')\n\n"
        "@task\n"
        "def deploy():\n"
        f"    run('true', env={{{env}}})\n"
    )


def timed_cli(folder: Path, env: dict[str, str], runs: int) -> dict[str, float]:
    """Wall time of ``nexus run deploy -q`` after one warm-up."""
    script = Path(sys.executable).parent / "nexus"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "nexus_core"]
    walls = []
    for i in range(runs + 1):
        start = time.perf_counter()
        proc = subprocess.run([*cmd, "run", "deploy", "-q"], cwd=folder, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"nexus run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        if i:
            walls.append(time.perf_counter() - start)
    return summary(walls)


def cli(fake: VaultFake, runs: int, work: Path) -> dict[str, dict[str, float]]:
    """``nexus run`` with N Vault secrets against the same run with plain strings."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "NEXUS_"))},
        "VAULT_ADDR": fake.url,
        "VAULT_ROLE_ID": "bench",
        "VAULT_SECRET_ID": "s",
        "XDG_CACHE_HOME": str(work / "cache"),
        "XDG_STATE_HOME": str(work / "state"),
        "XDG_DATA_HOME": str(work / "data"),
        "XDG_CONFIG_HOME": str(work / "config"),
        "NO_COLOR": "1",
        "CI": "1",
    }
    out = {}
    for name, with_secrets in ((f"nexus run, {N} plain env values", False), (f"nexus run, {N} vault secrets", True)):
        folder = work / ("vault" if with_secrets else "plain")
        folder.mkdir()
        (folder / "nexusfile.py").write_text(nexusfile(with_secrets))
        logins = fake.logins
        out[name] = timed_cli(folder, env, runs)
        if with_secrets:
            assert fake.logins - logins == runs + 1, "one login per run"
    return out


def dead_vault(work: Path) -> dict[str, dict[str, float]]:
    """N secrets against a Vault that never answers (vault_timeout=1, vault_retries=1)."""
    url, accepted, close = blackhole()
    try:
        from nexus_core.plugin import SecretError

        os.environ["VAULT_TOKEN"] = "hvs.bench"
        b = backend({"vault_addr": url, "vault_timeout": 1, "vault_retries": 1}, str(work))
        start = time.perf_counter()
        failed = 0
        for i in range(N):
            try:
                b.resolve(f"secret/app/s{i}#value")  # type: ignore[attr-defined]
            except SecretError:
                failed += 1
        wall = time.perf_counter() - start
        b.close()  # type: ignore[attr-defined]
        assert failed == N
        return {
            f"dead Vault: {N} secrets fail (timeout 1 s, 1 retry)": summary([wall]),
            "dead Vault: connections attempted": summary([float(accepted[0])]),
        }
    finally:
        close()
        os.environ.pop("VAULT_TOKEN", None)


def main() -> None:
    """Run the Vault benchmarks and write the results."""
    quick = "--quick" in sys.argv
    runs = 3 if quick else 10
    sys.path.insert(0, str(HERE.parent))
    from bench.run import compile_sources

    compile_sources("nexus_vault")  # timed runs must not compile modules (PYTHONDONTWRITEBYTECODE)
    work = Path(tempfile.mkdtemp(prefix="nexus-bench-vault-"))
    results: dict[str, dict[str, float]] = {}
    with VaultFake() as fake:
        fake.add_approle("bench", "s")
        for i in range(N):
            fake.put(f"app/s{i}", {"value": f"secret-value-{i}"})
        results.update(in_process(fake, runs, str(work)))
        try:
            results.update(cli(fake, runs, work))
        except SystemExit as exc:  # a core without secret(): say so, keep the rest
            print(f"note: CLI part skipped: {exc}", file=sys.stderr)
    results.update(dead_vault(work))
    per = {}
    plain, vaulted = results.get(f"nexus run, {N} plain env values"), results.get(f"nexus run, {N} vault secrets")
    if plain and vaulted:
        per["per secret through the CLI (ms)"] = (vaulted["median"] - plain["median"]) / N * 1000
    per["per secret in-process, one login (ms)"] = results[f"backend: 1 login + {N} secrets"]["median"] / N * 1000
    per["per secret in-process, login each (ms)"] = results[f"one client + login per secret ({N})"]["median"] / N * 1000
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vault.json").write_text(json.dumps({"results": results, "derived": per}, indent=2) + "\n")
    lines = [
        "# nexus-vault benchmark",
        "",
        f"Local fake Vault (plugins/nexus_vault/tests/vaultfake.py), {N} secrets, AppRole, median of {runs} runs.",
        "",
        "| measure | median s | min s | max s |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {v['median']:.4f} | {v['min']:.4f} | {v['max']:.4f} |" for k, v in results.items()]
    lines += ["", "| derived | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in per.items()]
    (RESULTS / "vault.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
