"""What a docs page shows, for the tests that run it: its commands and its example output."""

import re
import shlex

from tests.support.daemon import REPO


def commands(page: str) -> list[list[str]]:
    """The ``cgw`` commands of ``docs/<page>``'s first shell block, without their comments."""
    return [shlex.split(line, comments=True) for line in block(page, "sh").splitlines()]


def block(page: str, lang: str) -> str:
    """The first fenced block of ``lang`` in ``docs/<page>``."""
    found = re.search(rf"```{lang}\n(.*?)```", (REPO / "docs" / page).read_text(), re.DOTALL)
    assert found is not None, (page, lang)
    return found.group(1)


def readme_commands(verbs: str) -> list[list[str]]:
    """The README's ``.venv/bin/cgw <verb>`` lines for the verbs matching ``verbs``."""
    readme = (REPO / "README.md").read_text()
    shown = re.findall(rf"^\.venv/bin/(cgw (?:{verbs})\b.*?)\s*(?:#.*)?$", readme, re.M)
    return [shlex.split(v) for v in shown]
