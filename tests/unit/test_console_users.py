"""Console accounts: roles, names, password hashes, the dummy check, rehash, the users file."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from pathlib import Path
from typing import Literal

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from gateway.console.users import HASHER, ROLES, UserError, Users, allowed
from gateway.core.errors import ConfigError
from tests.support.accounts import FAST, SLOWER

PASSWORD = "correct horse"


class Recording(PasswordHasher):
    """``FAST``'s parameters; records the hashes it checks and the passwords it hashes."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.checked: list[str] = []
        self.hashed = 0
        self.threads: set[threading.Thread] = set()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.checked.append(str(hash))
        self.threads.add(threading.current_thread())
        return super().verify(hash, password)

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.hashed += 1
        return super().hash(password, salt=salt)


def one_user(hasher: PasswordHasher = FAST) -> Users:
    users = Users(hasher=hasher)
    users.add("wang", "guard", PASSWORD, "王伟")
    return users


# -- roles ------------------------------------------------------------------------------------


def test_each_role_opens_the_areas_of_the_documented_table() -> None:
    table = {
        "duty": {"guard", "installer", "admin"},
        "status": {"guard", "installer", "admin"},
        "devices": {"installer", "admin"},
        "commission": {"installer", "admin"},
        "reports": {"installer", "admin"},
        "welfare": {"guard", "installer", "admin"},
        "users": {"admin"},
    }
    for area, roles in table.items():
        assert {r for r in ROLES if allowed(r, area)} == roles, area


def test_an_unknown_role_or_area_opens_nothing() -> None:
    assert not allowed("root", "duty")
    assert not allowed("admin", "shell")
    assert not allowed("", "")


# -- names, displays, passwords -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["wang", "w", "guard.01", "li_na-2", "A" * 32, "9lives"])
def test_ascii_names_of_1_to_32_are_accounts(name: str) -> None:
    users = Users(hasher=FAST)
    assert users.add(name, "guard", PASSWORD).name == name.lower()


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a" * 33,
        "王伟",  # the person's name goes in display
        "ｗａｎｇ",  # full-width letters: isalnum() is true, the look is 'wang'
        "\u212aate",  # KELVIN SIGN: lower() makes it an ASCII 'k'
        "-rf",  # reads as an option
        ".hidden",
        "two words",
        "wang\n",
    ],
)
def test_other_names_are_refused_naming_the_rule(name: str) -> None:
    with pytest.raises(UserError, match="1 to 32 ASCII letters"):
        Users(hasher=FAST).add(name, "guard", PASSWORD)


def test_names_are_case_insensitive() -> None:
    users = one_user()
    with pytest.raises(UserError, match="user wang exists"):
        users.add("Wang", "admin", PASSWORD)
    assert users.get("WANG") == users.get("wang")
    assert users.verify("Wang", PASSWORD) is not None


def test_a_display_is_any_script_up_to_64_printable_characters() -> None:
    users = Users(hasher=FAST)
    assert users.add("wang", "guard", PASSWORD, "王伟 (夜班)").display == "王伟 (夜班)"
    for bad in ["", "x" * 65, "王\n伟", " 王伟", "a\x1b[31m"]:
        with pytest.raises(UserError, match=r"display: .*printable"):
            users.add("li", "guard", PASSWORD, bad)
    assert users.names() == ["wang"]


def test_a_role_outside_the_three_is_refused() -> None:
    with pytest.raises(UserError, match=r"role: .*'guard', 'installer' or 'admin'"):
        Users(hasher=FAST).add("wang", "root", PASSWORD)  # type: ignore[arg-type]


def test_a_password_needs_8_characters() -> None:
    users = Users(hasher=FAST)
    with pytest.raises(UserError, match="too short: at least 8 characters"):
        users.add("wang", "guard", "1234567")
    users.add("wang", "guard", "12345678")
    with pytest.raises(UserError, match="too short"):
        users.set_password("wang", "")
    assert users.verify("wang", "12345678") is not None


def test_a_full_width_password_matches_its_ascii_spelling() -> None:
    users = Users(hasher=FAST)
    users.add("wang", "guard", "Ｐａｓｓｗｏｒｄ１２")  # typed with a Chinese input method
    assert users.verify("wang", "Password12") is not None


# -- hashes -------------------------------------------------------------------------------------


def test_the_default_hash_is_argon2id_with_the_owasp_parameters() -> None:
    params = extract_parameters(HASHER.hash("x"))
    assert (params.type, params.memory_cost, params.time_cost, params.parallelism) == (
        Type.ID,
        19 * 1024,
        2,
        1,
    )


def test_only_a_hash_of_the_password_is_kept_and_shown_nowhere(tmp_path: Path) -> None:
    users = one_user()
    user = users.get("wang")
    assert user is not None
    assert user.hash.startswith("$argon2id$")
    assert PASSWORD not in user.hash
    assert "argon2" not in repr(user)
    assert "argon2" not in str(user)
    users.save(tmp_path / "users.yaml")
    text = (tmp_path / "users.yaml").read_text()
    assert PASSWORD not in text
    assert user.hash in text


def test_a_wrong_password_or_name_is_refused() -> None:
    users = one_user()
    assert users.verify("wang", PASSWORD + "!") is None
    assert users.verify("wang", "") is None
    assert users.verify("li", PASSWORD) is None
    user = users.verify("wang", PASSWORD)
    assert user is not None
    assert (user.name, user.role, user.display) == ("wang", "guard", "王伟")


def test_an_unknown_name_is_checked_against_a_dummy_hash_of_the_same_cost() -> None:
    hasher = Recording()
    users = one_user(hasher)
    own = users.get("wang")
    assert own is not None
    for name in ["li", "王伟", "x" * 500, ""]:
        hasher.checked.clear()
        assert users.verify(name, PASSWORD) is None
        assert len(hasher.checked) == 1, name  # one argon2 check, as for a real account
        (dummy,) = hasher.checked
        assert dummy != own.hash
        assert extract_parameters(dummy) == extract_parameters(own.hash)


def test_the_dummy_is_made_at_the_first_check_of_any_name() -> None:
    hasher = Recording()
    users = one_user(hasher)
    made = hasher.hashed
    users.verify("wang", PASSWORD)  # a known name pays for the dummy, not the first unknown one
    assert hasher.hashed == made + 1
    users.verify("li", PASSWORD)
    users.verify("zhao", PASSWORD)
    assert hasher.hashed == made + 1


def test_a_hash_with_other_parameters_is_upgraded_at_sign_in(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    one_user(SLOWER).save(path)
    users = Users.load(path, hasher=FAST)
    old = users.get("wang")
    assert old is not None
    assert users.verify("wang", "wrong password") is None
    after_failure = users.needs_save
    assert not after_failure  # a failure changes nothing
    user = users.verify("wang", PASSWORD)
    assert user is not None
    after_success = users.needs_save
    assert after_success
    assert user.hash != old.hash
    assert extract_parameters(user.hash) == extract_parameters(FAST.hash("x"))
    users.save(path)
    assert not users.needs_save
    again = Users.load(path, hasher=FAST)
    assert again.verify("wang", PASSWORD) is not None
    assert not again.needs_save


def test_an_upgrade_never_undoes_a_password_set_meanwhile() -> None:
    class Racing(PasswordHasher):
        """A new password is set between the check and the upgrade (by the loop's thread)."""

        raced = False

        def check_needs_rehash(self, hash: str | bytes) -> bool:
            if not self.raced:
                self.raced = True
                users.set_password("wang", "the new password")
            return True

    users = Users(hasher=Racing(time_cost=1, memory_cost=8, parallelism=1))
    users.add("wang", "guard", PASSWORD)
    assert users.verify("wang", PASSWORD) is not None
    assert not users.needs_save
    stored = users.get("wang")
    assert stored is not None
    assert FAST.verify(stored.hash, "the new password")  # raises if the upgrade overwrote it


async def test_averify_checks_in_worker_threads_a_few_at_a_time() -> None:
    class Slow(Recording):
        def __init__(self) -> None:
            super().__init__()
            self.now = self.most = 0
            self.guard = threading.Lock()

        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            with self.guard:
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(0.02)
            try:
                return super().verify(hash, password)
            finally:
                with self.guard:
                    self.now -= 1

    hasher = Slow()
    users = Users(hasher=hasher, concurrency=2)
    users.add("wang", "guard", PASSWORD)
    results = await asyncio.gather(*(users.averify("wang", PASSWORD) for _ in range(6)))
    assert all(r is not None for r in results)
    assert hasher.most == 2
    assert threading.current_thread() not in hasher.threads


# -- the file -----------------------------------------------------------------------------------


def test_a_missing_file_is_no_accounts(tmp_path: Path) -> None:
    users = Users.load(tmp_path / "none.yaml")
    assert users.names() == []
    assert users.verify("wang", PASSWORD) is None


def test_save_writes_mode_0600_atomically_and_load_reads_it_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "users.yaml"
    users = one_user()
    users.add("li", "admin", "another password")
    users.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["users.yaml"]  # no temporary file left
    again = Users.load(path, hasher=FAST)
    assert again.names() == ["li", "wang"]
    assert again.get("wang") == users.get("wang")
    assert again.verify("li", "another password") is not None


def test_a_failed_save_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "users.yaml"
    users = one_user()
    users.save(path)
    before = path.read_bytes()
    users.add("li", "admin", "another password")

    def broken_disk(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_disk)
    with pytest.raises(OSError, match="Input/output error"):
        users.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["users.yaml"]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_a_file_saved_by_root_belongs_to_the_owner_of_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "cgw"
    folder.mkdir()
    os.chown(folder, 4242, 4343)  # the daemon's user owns its state folder
    one_user().save(folder / "users.yaml")
    st = (folder / "users.yaml").stat()
    assert (st.st_uid, st.st_gid) == (4242, 4343)


def test_save_refuses_to_overwrite_a_change_it_has_not_read(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    one_user().save(path)
    mine = Users.load(path, hasher=FAST)
    theirs = Users.load(path, hasher=FAST)
    theirs.remove("wang")
    theirs.save(path)
    mine.add("li", "admin", "another password")
    with pytest.raises(UserError, match="changed since it was read"):
        mine.save(path)
    assert Users.load(path).names() == []
    with pytest.raises(UserError, match="changed since it was read"):
        Users(hasher=FAST).save(path)  # nor a file it never read


def test_stale_tells_a_changed_file_with_one_stat(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    users = one_user()
    assert not users.stale(tmp_path / "absent.yaml")
    users.save(path)
    assert not users.stale(path)
    loaded = Users.load(path, hasher=FAST)
    assert not loaded.stale(path)
    other = Users.load(path, hasher=FAST)
    other.set_password("wang", "the new password")
    other.save(path)
    assert loaded.stale(path)


def test_differs_names_the_accounts_whose_sessions_must_end() -> None:
    old = one_user()
    old.add("li", "admin", "another password")
    old.add("zhao", "installer", "a third password")
    new = Users(old, hasher=FAST)
    new.set_password("wang", "the new password")
    new.remove("li")
    new.add("sun", "guard", "a fourth password")
    assert new.differs(old) == {"wang", "li"}
    role = Users([u if u.name != "zhao" else u.model_copy(update={"role": "guard"}) for u in old])
    assert role.differs(old) == {"zhao"}


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        Users.load(path, hasher=FAST)
    return info.value.errors


def test_a_malformed_file_names_the_file_and_every_problem(tmp_path: Path) -> None:
    good = FAST.hash("x")
    path = write(
        tmp_path / "users.yaml",
        "users:\n"
        "  - {name: a b, role: guard, hash: '" + good + "'}\n"
        "  - {name: li, role: boss, hash: '" + good + "'}\n"
        "  - {name: zhao, role: admin, hash: plaintext}\n"
        "  - {name: sun, role: admin, hash: '" + good + "', pasword: x}\n"
        "  - {name: Zhou, role: guard}\n",
    )
    assert errors_of(path) == [
        f"{path}: users[0].name: 'a b': 1 to 32 ASCII letters, digits, '.', '_' or '-',"
        " starting with a letter or a digit",
        f"{path}: users[1].role: Input should be 'guard', 'installer' or 'admin'",
        f"{path}: users[2].hash: not an argon2 hash; set the password with 'cgw users passwd'",
        f"{path}: users[3].pasword: unknown key",
        f"{path}: users[4].hash: required key is missing",
    ]
    write(
        path,
        "users:\n"
        "  - {name: zhou, role: guard, hash: '" + good + "'}\n"
        "  - {name: ZHOU, role: admin, hash: '" + good + "'}\n",
    )
    assert errors_of(path) == [f"{path}: users[1].name: 'zhou' again (users[0] has it)"]


def test_broken_yaml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "users.yaml", "users:\n  - name: wang\n   role: [\n")
    (line,) = errors_of(path)
    assert line.startswith(f"{path} (line ")
    assert "invalid YAML" in line


def test_a_file_that_is_not_a_users_list_says_what_it_should_be(tmp_path: Path) -> None:
    assert errors_of(write(tmp_path / "a.yaml", "- wang\n")) == [
        f"{tmp_path / 'a.yaml'}: a users file is a mapping with a 'users' list"
    ]
    assert errors_of(write(tmp_path / "b.yaml", "users: wang\n")) == [
        f"{tmp_path / 'b.yaml'}: users: Input should be a valid list"
    ]
    assert Users.load(write(tmp_path / "c.yaml", "")).names() == []


def test_a_file_others_may_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    one_user().save(path)
    path.chmod(0o640)
    assert errors_of(path) == [
        f"secret file {path} is readable by group or others (mode 640); run: chmod 600 {path}"
    ]


def test_an_unreadable_file_says_why(tmp_path: Path) -> None:
    folder = tmp_path / "users.yaml"
    folder.mkdir(mode=0o700)
    (line,) = errors_of(folder)
    assert line.startswith(f"{folder}: cannot read")
