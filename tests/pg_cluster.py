"""A throwaway PostgreSQL cluster: ``initdb`` into a temporary folder and ``pg_ctl``
start/stop, as an unprivileged user when run as root (initdb refuses root).

Used by ``.ci/run`` where no server is running, and by the multi-machine test, which
needs a server listening on its own veth address::

    python -m tests.pg_cluster start FOLDER HOST PORT   # prints the server's URL
    python -m tests.pg_cluster stop FOLDER
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["find_binary", "restart_cluster", "start_cluster", "stop_cluster"]

_UNPRIVILEGED = "nobody"


def find_binary(name: str) -> str:
    """``initdb``/``pg_ctl`` on PATH, else the newest under /usr/lib/postgresql (Debian)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if not versions:
        raise FileNotFoundError(
            f"{name} not found: install PostgreSQL (apt-get install postgresql)"
        )
    return versions[-1]


def _run(command: list[str], *, check: bool = True) -> None:
    """``command``, as an unprivileged user when we are root; its output on failure."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", _UNPRIVILEGED, "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")


def start_cluster(
    folder: Path, host: str, port: int, *, durable: bool = False, trusted: Sequence[str] = ()
) -> str:
    """A new cluster in ``folder`` listening on ``host`` (addresses, comma-separated) and
    ``port`` (trust auth, user ``postgres``); returns its URL. ``trusted`` are the
    networks (CIDR) besides loopback whose clients it lets in. ``durable=False`` turns
    fsync off (tests). As root, the folder is made for user nobody (its parent must let
    nobody through)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.geteuid() == 0:
        folder.parent.chmod(folder.parent.stat().st_mode | 0o011)
        shutil.chown(folder, _UNPRIVILEGED)
    data = folder / "data"
    _run(
        [
            find_binary("initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]
    )
    with (data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
        hba.writelines(f"host all all {network} trust\n" for network in trusted)
    options = f"-k {folder} -c listen_addresses='{host}' -p {port} -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    pg_ctl = find_binary("pg_ctl")
    _run([pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"])
    return f"postgresql://postgres@{host.split(',', maxsplit=1)[0]}:{port}/postgres"


def restart_cluster(folder: Path, mode: str = "fast") -> None:
    """Restart the server (``mode`` ``immediate`` is a crash: no checkpoint)."""
    # -l: a server writing to our pipes would keep them open, and _run waiting for ever
    pg_ctl = find_binary("pg_ctl")
    _run(
        [pg_ctl, "-D", str(folder / "data"), "-l", str(folder / "log"), "-m", mode, "-w", "restart"]
    )


def stop_cluster(folder: Path) -> None:
    """Stop the server of ``folder`` (if it runs) and remove the folder."""
    data = folder / "data"
    if (data / "postmaster.pid").exists():
        _run([find_binary("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], check=False)
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "start":
        print(start_cluster(Path(argv[1]), argv[2], int(argv[3])))
        return 0
    if len(argv) == 2 and argv[0] == "stop":
        stop_cluster(Path(argv[1]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
