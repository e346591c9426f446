"""deploy/Dockerfile, as far as it can be checked without a Docker daemon: a small lint (a pinned
slim Python base, no ``latest``, no system packages, a numeric non-root user that is the
DaemonSet's, ``lhtrio node`` as the entry point, no HEALTHCHECK — the probes do that — and COPY
sources that exist), and the image's build step for real: exactly what the Dockerfile copies,
installed into a clean virtual environment from the package index, runs ``lhtrio node --help``
(marked ``real``: it downloads the dependencies)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.deploy.manifests import ROOT, dockerfile, documents

DEPLOY = ROOT / "deploy"


def instructions(name: str) -> list[str]:
    return [args for instruction, args in dockerfile() if instruction == name]


def test_the_base_is_a_pinned_slim_python() -> None:
    (base,) = instructions("FROM")
    image, _, tag = base.partition(":")
    assert image == "python"
    assert re.fullmatch(r"3\.\d+\.\d+-slim-[a-z]+", tag), f"pin a patch release, not {tag!r}"
    assert "latest" not in base
    assert tag.startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")  # as tested


def test_it_installs_no_system_packages_and_has_no_healthcheck() -> None:
    runs = " ".join(instructions("RUN"))
    assert "apt-get" not in runs
    assert "apk " not in runs
    assert not instructions("HEALTHCHECK")  # Kubernetes' probes ask /healthz and /readyz
    assert "No HEALTHCHECK" in (DEPLOY / "Dockerfile").read_text()  # and it says why


def test_it_runs_lhtrio_node_as_the_daemonsets_user() -> None:
    assert [json.loads(e) for e in instructions("ENTRYPOINT")] == [["lhtrio", "node"]]
    (user,) = instructions("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) != 0
    (daemonset,) = documents(DEPLOY / "daemonset.yaml")
    context = daemonset["spec"]["template"]["spec"]["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid))


def copied() -> list[str]:
    sources: list[str] = []
    for args in instructions("COPY"):
        *given, _ = args.split()
        sources += [s for s in given if not s.startswith("--")]
    return sources


def test_every_copy_source_exists_in_the_build_context() -> None:
    assert copied()
    for source in copied():
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository's root"


@pytest.mark.real
def test_what_the_image_copies_installs_into_a_clean_venv_and_runs_lhtrio_node(
    tmp_path: Path,
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    for source in copied():
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, context / source)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "."],
        cwd=context,
        env=clean,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    shown = subprocess.run(  # the entry point, with the DaemonSet's options' help
        [str(env_dir / "bin" / "lhtrio"), "node", "run", "--help"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "--store URL" in shown.stdout
    assert "kubernetes:KUBECONFIG" in shown.stdout
    probe = subprocess.run(
        [str(python), "-c", "import lhtrio.manager.store.kubernetes, lightkube"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
