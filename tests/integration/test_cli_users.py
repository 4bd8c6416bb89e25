"""``cgw users`` as an installer runs it: the real command in a subprocess, the real hash."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from gateway.console.users import Users

PASSWORD = "correct horse"


def cgw(*args: str | Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GW_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "users", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def ok(*args: str | Path, stdin: str = "") -> str:
    done = cgw(*args, stdin=stdin)
    assert (done.returncode, done.stderr) == (0, "")
    return done.stdout


def add(file: Path, name: str, role: str, *more: str, password: str = PASSWORD) -> str:
    """``cgw users add`` with the password on stdin, as a script does it."""
    argv: list[str | Path] = [
        "add",
        name,
        "--role",
        role,
        *more,
        "--file",
        file,
        "--password-stdin",
    ]
    return ok(*argv, stdin=password + "\n")


def refused(*args: str | Path, stdin: str = "") -> str:
    """The one line on stderr of a command that changed nothing (exit code 1)."""
    done = cgw(*args, stdin=stdin)
    assert done.returncode == 1, done
    assert done.stdout == ""
    return done.stderr.strip()


def test_add_list_passwd_remove(tmp_path: Path) -> None:
    file = tmp_path / "users.yaml"
    assert add(file, "Wang", "guard", "--display", "王伟") == f"added wang (guard) to {file}\n"
    add(file, "li", "admin", password="li's password")
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    text = file.read_text(encoding="utf-8")
    assert PASSWORD not in text
    assert "$argon2id$v=19$m=19456,t=2,p=1$" in text

    listed = ok("list", "--file", file)
    assert listed.splitlines() == [
        "NAME  ROLE   DISPLAY",
        "li    admin  -",
        "wang  guard  王伟",
    ]
    assert "argon2" not in listed

    before = Users.load(file)
    assert before.verify("wang", PASSWORD) is not None
    ok("passwd", "WANG", "--file", file, "--password-stdin", stdin="a new password\n")
    after = Users.load(file)
    assert after.verify("wang", PASSWORD) is None
    assert after.verify("wang", "a new password") is not None
    assert before.stale(file)  # what the daemon checks, then it signs wang out
    assert after.differs(before) == {"wang"}

    assert ok("remove", "li", "--file", file) == f"removed li from {file}\n"
    assert Users.load(file).names() == ["wang"]


def test_the_file_is_the_one_the_config_names(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "gateway.yaml"
    config.parent.mkdir()
    config.write_text("console:\n  users_file: ../state/users.yaml\n", encoding="utf-8")
    ok("add", "wang", "--role", "installer", "-c", config, "--password-stdin", stdin=PASSWORD)
    file = tmp_path / "state" / "users.yaml"  # relative to the config's folder
    assert Users.load(file).names() == ["wang"]
    assert "wang  installer" in ok("list", "-c", config)
    other = tmp_path / "other.yaml"
    assert ok("list", "--file", other) == f"no accounts in {other}\n"


def test_each_refusal_says_why_in_one_line_and_changes_nothing(tmp_path: Path) -> None:
    file = tmp_path / "users.yaml"
    add(file, "wang", "guard")
    before = file.read_bytes()

    assert refused(
        "add", "Wang", "--role", "admin", "--file", file, "--password-stdin", stdin=PASSWORD
    ) == (f"cgw users add: user wang exists in {file}")
    assert refused(
        "add", "li", "--role", "admin", "--file", file, "--password-stdin", stdin="1234567\n"
    ) == ("cgw users add: the password is too short: at least 8 characters")
    assert refused(
        "add", "王伟", "--role", "guard", "--file", file, "--password-stdin", stdin=PASSWORD
    ).startswith("cgw users add: bad user name '王伟': 1 to 32 ASCII letters")
    assert refused("passwd", "li", "--file", file, "--password-stdin", stdin=PASSWORD) == (
        f"cgw users passwd: no user 'li' in {file}"
    )
    assert refused("remove", "li", "--file", file) == f"cgw users remove: no user 'li' in {file}"
    assert refused("passwd", "wang", "--file", file) == (
        "cgw users passwd: no terminal to ask for the password on; pipe it in with --password-stdin"
    )
    assert file.read_bytes() == before


def test_a_file_that_cannot_be_used_is_named_with_the_reason(tmp_path: Path) -> None:
    file = tmp_path / "users.yaml"
    file.write_text("users:\n  - name: wang\n    role: boss\n", encoding="utf-8")
    file.chmod(0o600)
    assert refused("list", "--file", file).splitlines() == [
        f"{file}: users[0].role: Input should be 'guard', 'installer' or 'admin'",
        f"{file}: users[0].hash: required key is missing",
    ]
    file.write_text("users: [\n", encoding="utf-8")
    assert refused("list", "--file", file).startswith(f"{file} (line 2, column 1): invalid YAML")
    add(tmp_path / "u2.yaml", "wang", "guard")
    (tmp_path / "u2.yaml").chmod(0o644)
    assert refused("list", "--file", tmp_path / "u2.yaml") == (
        f"secret file {tmp_path / 'u2.yaml'} is readable by group or others (mode 644);"
        f" run: chmod 600 {tmp_path / 'u2.yaml'}"
    )
    config = tmp_path / "gateway.yaml"
    config.write_text("console: {users_file: 5}\n", encoding="utf-8")
    assert refused("list", "-c", config) == (
        f"{config}: console.users_file: a file path is expected"
    )
    assert refused("list", "-c", tmp_path / "missing.yaml").startswith(
        f"{tmp_path / 'missing.yaml'}: cannot read"
    )


def test_file_and_config_are_one_or_the_other(tmp_path: Path) -> None:
    done = cgw("list", "--file", tmp_path / "u.yaml", "-c", tmp_path / "g.yaml")
    assert done.returncode == 2
    assert "not allowed with argument" in done.stderr
