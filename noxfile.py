"""Developer and CI entry points for lhtrio.

``python3 noxfile.py [nox arguments]`` works on a machine that has nothing but Python: it creates
``.nox/_bootstrap`` with nox and uv, then runs nox on this file. ``nox`` itself works the same way
once installed. Sessions use the uv backend.

* default (no ``-s``): lint, typecheck, imports, tests — what CI runs.
* ``-s cluster``: the control plane's main job: three nodes on the embedded store (see README).
* ``-s demo``: the data path alone, in one process.
* ``-s bench -- NAME``: benchmarks (``wire``, ``rpc``, ...); figures go to docs/benchmarks.md.
* ``-s chaos -- --schedules N [--seed S] [--sim]``: fault schedules judged by the checker
  (docs/reliability.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Commands the test suite drives for real, and the Debian packages that provide them.
APT_FOR_TESTS: dict[str, str] = {
    "qemu-io": "qemu-utils",
    "qemu-img": "qemu-utils",
    "qemu-nbd": "qemu-utils",  # the yardstick the NBD tests compare lhtrio with
    "nbdinfo": "libnbd-bin",
    # libnbd's Python module (tests/frontend/libnbd_probe.py); nbdsh comes in the same package
    "nbdsh": "python3-libnbd",
    "nbdcopy": "libnbd-bin",
    "nbdfuse": "nbdfuse",
    "nbdkit": "nbdkit",  # the chaos tests' disks (its error and cache filters)
    "mkfs.ext2": "e2fsprogs",  # a replica on a file system without a journal warns
    "findmnt": "util-linux",
    "e2fsck": "e2fsprogs",
    "fusermount3": "fuse3",
    "fio": "fio",
    "mkfs.ext4": "e2fsprogs",
    "losetup": "mount",
    "etcd": "etcd-server",  # the etcd store's tests run against a real etcd
    "etcdctl": "etcd-client",
    "curl": "curl",  # reads the admin API's watch streams as an operator would (curl -N)
    "nft": "nftables",  # the chaos tests drop packets between network namespaces
    "nsenter": "util-linux",  # ... and start replicas in them
}


def _bootstrap() -> None:
    """Run nox from a private venv, creating it first if needed (``python3 noxfile.py``)."""
    venv = HERE / ".nox" / "_bootstrap"
    python = venv / "bin" / "python"
    if not (venv / "bin" / "nox").exists():
        probe = [sys.executable, "-c", "import ensurepip, venv"]
        if subprocess.run(probe, check=False).returncode:
            _apt_install(["python3-venv"], why="to create virtual environments")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "nox>=2025.2.9",
                "uv>=0.5",
            ],
            check=True,
        )
    os.execv(str(python), [str(python), "-m", "nox", "-f", __file__, *sys.argv[1:]])


def _apt_install(packages: list[str], *, why: str) -> None:
    if os.geteuid() != 0:
        sys.exit(
            f"lhtrio needs the Debian packages {' '.join(packages)} {why}; "
            f"install them as root: apt-get install -y {' '.join(packages)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        check=True,
        env=env,
    )


if __name__ == "__main__":
    _bootstrap()

import nox  # noqa: E402

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "typecheck", "imports", "tests"]
nox.options.reuse_venv = "yes"

PYPROJECT = nox.project.load_toml("pyproject.toml")


def _install(session: nox.Session, *groups: str) -> None:
    deps = [dep for group in groups for dep in nox.project.dependency_groups(PYPROJECT, group)]
    session.install("-e", ".", *deps)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (installs the real clients the tests drive, as root)."""
    missing = sorted({pkg for cmd, pkg in APT_FOR_TESTS.items() if shutil.which(cmd) is None})
    if missing:
        _apt_install(missing, why="for the tests, which drive these real clients")
    _install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff format --check and ruff check."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on lhtrio/ and tests/."""
    _install(session, "typecheck")
    session.run("mypy", "lhtrio", "tests")


@nox.session
def imports(session: nox.Session) -> None:
    """import-linter: the layering in docs/architecture.md."""
    _install(session, "imports")
    session.run("lint-imports")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: ``nox -s bench -- rpc`` (see docs/benchmarks.md)."""
    _install(session)
    session.run("python", "-m", "lhtrio.bench", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """Fault schedules judged by the checker (docs/reliability.md): ``-- --schedules N [--seed S]
    [--faults F]`` on real processes (``python -m lhtrio.verify.chaos``); with ``--sim``, in the
    deterministic simulator (``python -m lhtrio.sim``, hash order pinned so that a seed from the
    table replays in a test too)."""
    _install(session)
    args = list(session.posargs)
    if "--sim" in args:
        args.remove("--sim")
        session.run("python", "-m", "lhtrio.sim", *args, env={"PYTHONHASHSEED": "0"})
    else:
        session.run("python", "-m", "lhtrio.verify.chaos", *args)


@nox.session
def cluster(session: nox.Session) -> None:
    """The control plane's main job: ``lhtrio cluster`` (three nodes on the embedded store)."""
    if shutil.which("qemu-io") is None:
        _apt_install(["qemu-utils"], why="for the cluster's tour, which drives qemu-io")
    _install(session)
    session.run("lhtrio", "cluster", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: ``lhtrio demo`` (see README)."""
    needed = {"qemu-io": "qemu-utils", "nbdinfo": "libnbd-bin"}
    missing = sorted({pkg for cmd, pkg in needed.items() if shutil.which(cmd) is None})
    if missing:
        _apt_install(missing, why="for the demo, which drives these real NBD clients")
    _install(session)
    session.run("lhtrio", "demo", *session.posargs)
