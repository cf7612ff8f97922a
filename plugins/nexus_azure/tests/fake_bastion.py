"""``az network bastion tunnel`` of the fake ``az``: a TCP relay from 127.0.0.1:--port to
``FAKE_BASTION_TARGET`` (``HOST:PORT``, the test's sshd). ``FAKE_BASTION_FAIL``: print it
to stderr and exit 1 instead. Each start appends ``PID ARGS`` to ``FAKE_AZ_LOG``."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def main() -> None:
    args = sys.argv[1:]
    log = os.environ.get("FAKE_AZ_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {' '.join(args)}\n")
    fail = os.environ.get("FAKE_BASTION_FAIL")
    if fail:
        print(fail, file=sys.stderr)
        sys.exit(1)
    port = int(args[args.index("--port") + 1])
    host, _, target_port = os.environ["FAKE_BASTION_TARGET"].rpartition(":")
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(16)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection((host, int(target_port)), timeout=10)
        except OSError:
            client.close()
            continue
        upstream.settimeout(None)
        threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()


main()
