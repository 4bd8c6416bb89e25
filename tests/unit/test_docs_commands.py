"""Every shell block in the README and docs/ says how it is kept true.

A command shown in the docs runs in a test, or is marked as needing what a test machine does
not have. The line before each ```sh block carries one of:

- ``<!-- run by: tests/a.py, tests/b.py -->``: each command's verb (``cgw <verb>``, ``make
  <target>``, the script of ``sh``) appears in one of those files, which exist;
- ``<!-- bench: run by hand -->``: a benchmark; the script exists and accepts every option
  shown (its ``--help`` is read);
- ``<!-- needs: <what> -->``: a real Pi, systemd or root on the real system (the install tests
  run the same scripts against a staging root: ``tests/integration/test_install.py``).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(?:<!-- (?P<marker>[^>]*) -->\n[ \t]*)?```(?:sh|bash|shell|console)\n(?P<body>.*?)```",
    re.S,
)


def blocks() -> list[tuple[str, str, str]]:
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in BLOCK.finditer(text):
            line = text[: m.start("body")].count("\n")
            out.append(
                (f"{doc.relative_to(REPO)}:{line}", m.group("marker") or "", m.group("body"))
            )
    return out


def commands(body: str) -> list[list[str]]:
    """The commands of a block: ``$ `` prompts and output lines skipped, continuations joined."""
    lines = body.replace("\\\n", " ").splitlines()
    prompted = any(line.startswith("$ ") for line in lines)
    out = []
    for line in lines:
        if prompted and not line.startswith("$ "):
            continue  # the output of the command above
        line = line.removeprefix("$ ").strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line.split(" # ")[0].split("|")[0].split(";")[0], posix=True)
        out.append(words)
    return out


def verb(words: list[str]) -> str:
    """What identifies a command in a test: the cgw verb, the make target, the script."""
    words = [w for w in words if w != "sudo"]
    head = Path(words[0]).name if words else ""
    rest = [w for w in words[1:] if not w.startswith("-")]
    if head in ("cgw", "python") and rest:
        return rest[0] if head == "cgw" else Path(rest[0]).name
    if head == "make" and rest:
        return rest[0]
    if head == "printf":
        return "--password-stdin"
    return head


@pytest.mark.parametrize(("where", "marker", "body"), blocks(), ids=lambda v: str(v)[:40])
def test_every_shell_block_in_the_docs_is_run_or_marked(where: str, marker: str, body: str) -> None:
    kind, _, detail = marker.partition(":")
    detail = detail.strip()
    assert kind in ("run by", "bench", "needs"), f"{where}: no <!-- run by|bench|needs --> marker"
    if kind == "needs":
        assert detail, f"{where}: say what it needs"
        return
    if kind == "bench":
        for words in commands(body):
            script = REPO / next(w for w in words if w.startswith("bench/"))
            shown = subprocess.run(
                [sys.executable, str(script), "--help"], capture_output=True, text=True,
                cwd=REPO, timeout=60, check=True,
            ).stdout  # fmt: skip
            for option in (w.split("=")[0] for w in words if w.startswith("--")):
                assert option in shown, f"{where}: {script.name} has no {option}"
        return
    files = [REPO / f.strip() for f in detail.split(",")]
    for f in files:
        assert f.is_file(), f"{where}: {f} does not exist"
    texts = "\n".join(f.read_text() for f in files)
    for words in commands(body):
        assert verb(words) in texts, f"{where}: {' '.join(words)!r} runs in none of {detail}"


def test_the_marker_check_catches_an_unmarked_block() -> None:
    text = "Some prose.\n\n```sh\ncgw frobnicate\n```\n"
    ((marker, body),) = [(m.group("marker"), m.group("body")) for m in BLOCK.finditer(text)]
    assert marker is None
    assert verb(commands(body)[0]) == "frobnicate"
