"""What a user installs: the wheel and sdist carry the host files; install-unit places them."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from auditd_py import __version__, install
from auditd_py.chain import _fast
from auditd_py.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "auditd_py"]
SHIPPED = [
    "systemd/auditd-py.service",
    "systemd/auditd-py.sysusers.conf",
    "systemd/auditd-py.tmpfiles.conf",
    "config/qa.yaml",
    "config/example.yaml",
]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )


def test_install_unit_copies_the_three_files_and_never_clobbers(tmp_path: Path) -> None:
    share = install.share_dir()
    done = install.install_unit(tmp_path, share)
    assert [(t.relative_to(tmp_path).as_posix(), w) for t, w in done] == [
        ("etc/systemd/system/auditd-py.service", "installed"),
        ("etc/sysusers.d/auditd-py.conf", "installed"),
        ("etc/tmpfiles.d/auditd-py.conf", "installed"),
    ]
    unit = tmp_path / "etc/systemd/system/auditd-py.service"
    assert unit.read_bytes() == (REPO / "systemd/auditd-py.service").read_bytes()
    assert all((t.stat().st_mode & 0o777) == 0o644 for t, _ in done)
    assert {w for _, w in install.install_unit(tmp_path, share)} == {"unchanged"}

    unit.write_text(unit.read_text() + "# a local edit\n")
    with pytest.raises(UsageError, match=r"differs .* drop-in"):
        install.install_unit(tmp_path, share)
    assert unit.read_text().endswith("# a local edit\n")  # nothing was written
    assert "replaced" in {w for _, w in install.install_unit(tmp_path, share, force=True)}
    assert unit.read_bytes() == (REPO / "systemd/auditd-py.service").read_bytes()

    sysusers = tmp_path / "etc/sysusers.d/auditd-py.conf"
    sysusers.unlink()
    sysusers.symlink_to("/etc/passwd")
    with pytest.raises(UsageError, match="not a regular file"):
        install.install_unit(tmp_path, share, force=True)


def test_install_unit_command(tmp_path: Path) -> None:
    r = run("install-unit", "--root", tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("installed: ") == 3
    r = run("install-unit", "--print-share")
    assert r.returncode == 0 and (Path(r.stdout.strip()) / "systemd/auditd-py.service").is_file()
    assert run("--version").stdout.strip() == f"auditd-py {__version__} (chain loop: compiled, " + (
        f"libsodium {_fast.sodium_version})"
    )


def test_share_dir_is_the_prefix_first(tmp_path: Path) -> None:
    (tmp_path / "share/auditd-py/systemd").mkdir(parents=True)
    (tmp_path / "share/auditd-py/systemd/auditd-py.service").write_text("[Unit]\n")
    assert install.share_dir(tmp_path) == tmp_path / "share/auditd-py"
    # without it, a source checkout (this one) still works
    assert install.share_dir(tmp_path / "nowhere") == REPO


@pytest.mark.integration
def test_wheel_and_sdist_carry_what_a_host_needs(tmp_path: Path) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
        env=env,
    )
    (whl,) = tmp_path.glob("auditd_py-*.whl")
    (sdist,) = tmp_path.glob("auditd_py-*.tar.gz")
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        meta = z.read(f"auditd_py-{__version__}.dist-info/METADATA").decode()
    data = f"auditd_py-{__version__}.data/data/share"
    for rel in SHIPPED:
        assert f"{data}/auditd-py/{rel}" in names, rel
    for doc in (
        "README.md",
        "LICENSE",
        "FORMAT.md",
        "THREAT_MODEL.md",
        "verify-output.schema.json",
    ):
        assert f"{data}/doc/auditd-py/{doc}" in names, doc
    for rel in ("bash-completion/completions/auditd-py.bash", "zsh/site-functions/_auditd-py",
                "man/man1/auditd-py.1"):  # fmt: skip
        assert f"{data}/{rel}" in names, rel  # where bash-completion, zsh and man look
    assert f"auditd_py-{__version__}.dist-info/licenses/LICENSE" in names
    assert "License-Expression: Apache-2.0" in meta
    assert not any(n.startswith("tests/") for n in names)
    with tarfile.open(sdist) as t:
        members = {m.split("/", 1)[1] for m in t.getnames() if "/" in m}
    generated = ["generated/completion/auditd-py.bash", "generated/man/auditd-py.1"]
    for rel in [*SHIPPED, *generated, "LICENSE", "docs/FORMAT.md", ".ci/bootstrap", "Makefile"]:
        assert rel in members, rel
