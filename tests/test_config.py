"""Configuration: every shipped file validates; errors name line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditd_py import config
from auditd_py.cli import main
from auditd_py.config import FileSource, SyslogSource, load_text
from auditd_py.errors import ConfigError
from auditd_py.units import parse_duration

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "config").glob("*.yaml"))

MINIMAL = """\
archive:
  path: /tmp/x
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_shipped_configs_exist() -> None:
    names = {p.name for p in SHIPPED}
    assert {"dev.yaml", "qa.yaml", "staging.yaml", "example.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_is_valid(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["config", "check", str(path)], capsys)
    assert code == 0, err
    assert "valid" in out and "sources:" in out


def test_issue_example_shape_loads() -> None:
    cfg = load_text(
        """\
environment: qa
archive:
  path: /var/lib/auditd-py/archive
  state: /var/lib/auditd-py/state
sealing:
  epoch_interval: 15m
sources:
  - name: app
    type: file
    paths: ["/var/log/app/*.log"]
  - name: syslog
    type: syslog
    listen: ["udp://127.0.0.1:5514", "tcp://127.0.0.1:5514", "unix:///run/auditd-py/log.sock"]
  - name: journal
    type: journald
    directory: /var/log/journal
    matches: ["_SYSTEMD_UNIT=app.service"]
""",
        env={},
    )
    assert cfg.sealing.epoch_interval == 15 * 60 * 10**9
    assert isinstance(cfg.sources[0], FileSource) and isinstance(cfg.sources[1], SyslogSource)


def test_unknown_key_names_line_and_key() -> None:
    with pytest.raises(ConfigError) as ei:
        load_text(MINIMAL + "sealing:\n  epoch_intervall: 5m\n", "qa.yaml", env={})
    assert "qa.yaml:4: sealing.epoch_intervall: unknown key (typo?)" in str(ei.value)


def test_every_error_is_reported_at_once() -> None:
    text = """\
archive:
  path: /x
  pth: /y
sealing:
  epoch_interval: 15x
sources:
  - name: a
    type: file
  - name: s
    type: syslog
    listen: ["smtp://x"]
  - name: j
    type: journald
    matches: ["lowercase=1"]
"""
    with pytest.raises(ConfigError) as ei:
        load_text(text, "c.yaml", env={})
    msg = str(ei.value)
    for want in (
        "c.yaml:3: archive.pth: unknown key",
        "c.yaml:5: sealing.epoch_interval: invalid duration '15x'",
        "c.yaml:7: sources.0.paths: Field required",
        "c.yaml:11: sources.1.listen: invalid listen address 'smtp://x'",
        "c.yaml:14: sources.2.matches: invalid journal match 'lowercase=1'",
    ):
        assert want in msg, msg


def test_env_expansion_with_defaults() -> None:
    text = "archive:\n  path: ${BASE}/arc\n  state: ${STATE:-/var/state}\n"
    cfg = load_text(text, env={"BASE": "/srv"})
    assert str(cfg.archive.path) == "/srv/arc" and str(cfg.archive.state) == "/var/state"
    with pytest.raises(ConfigError, match=r"c.yaml:2: environment variable \$\{BASE\} is not set"):
        load_text(text, "c.yaml", env={})


def test_durations_and_sizes() -> None:
    assert parse_duration("500ms") == 500_000_000
    assert parse_duration("1h") == 3600 * 10**9
    assert parse_duration(2) == 2 * 10**9
    assert config.parse_size("64KiB") == 65536 and config.parse_size("1MiB") == 1 << 20
    for bad in ("0s", "-1s", "fast", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_reserved_and_duplicate_source_names() -> None:
    src = "  - name: {n}\n    type: file\n    paths: [/a]\n"
    with pytest.raises(ConfigError, match="reserved"):
        load_text(MINIMAL + "sources:\n" + src.format(n="auditd-py"), env={})
    with pytest.raises(ConfigError, match="two sources are named 'x'"):
        load_text(MINIMAL + "sources:\n" + src.format(n="x") + src.format(n="x"), env={})


def test_duplicate_yaml_key_and_bad_yaml() -> None:
    with pytest.raises(ConfigError, match="duplicate key 'archive'"):
        load_text(MINIMAL + MINIMAL, "d.yaml", env={})
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_text("archive: [unclosed\n", "b.yaml", env={})
    with pytest.raises(ConfigError, match="empty"):
        load_text("", "e.yaml", env={})


def test_two_sources_on_one_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(
        MINIMAL
        + "sources:\n"
        + "  - {name: a, type: file, paths: [/var/log/x.log]}\n"
        + "  - {name: b, type: file, paths: [/var/log/x.log]}\n"
    )
    code, _, err = run(["config", "check", str(p)], capsys)
    assert code == 2
    assert "sources 'a' and 'b' both read '/var/log/x.log'" in err
    assert "Traceback" not in err


def test_config_check_errors_exit_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(MINIMAL + "typo: 1\n")
    code, _, err = run(["config", "check", str(p)], capsys)
    assert code == 2 and "c.yaml:3: typo: unknown key" in err and "Traceback" not in err
    code, _, err = run(["config", "check", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and "cannot read configuration" in err
    p.write_bytes(b"archive:\n  path: /\xff\n")
    code, _, err = run(["config", "check", str(p)], capsys)
    assert code == 2 and "not UTF-8" in err


def test_forward_targets_are_validated_and_secrets_not_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(
        MINIMAL
        + "forward:\n"
        + "  - {name: c, type: syslog, target: 'tcp://127.0.0.1:514'}\n"
        + "  - {name: w, type: s3, bucket: logs, secret_access_key: hunter2-secret}\n"
    )
    code, out, _ = run(["config", "check", str(p)], capsys)
    assert code == 0 and "hunter2-secret" not in out and "(set, not shown)" in out
    for bad, msg in (
        ("  - {name: c, type: syslog, target: 'udp://h:1'}\n", "use tcp://HOST:PORT"),
        ("  - {name: c, type: syslog, target: 'tls://h:1'}\n", "needs a tls: section"),
        (
            "  - {name: c, type: syslog, target: 'tcp://h:1'}\n"
            "  - {name: c, type: syslog, target: 'tcp://h:2'}\n",
            "two forward targets are named 'c'",
        ),
    ):
        p.write_text(MINIMAL + "forward:\n" + bad)
        code, _, err = run(["config", "check", str(p)], capsys)
        assert code == 2 and msg in err, err
