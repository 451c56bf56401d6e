"""The API checks `make api-check` runs in CI can fail: `buf breaking` against the committed
image of the last release refuses a change that would break its clients, and `buf lint`
refuses an undocumented message. Each check runs on a copy of protos/, changed in one way,
next to the unchanged copy, which passes: so a failure is the change's doing.

buf runs as the Makefile runs it (its BUF variable, through npx). Without npx these tests
are skipped, and fail instead when CI=true: CI must not pass them by not running them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
RELEASES = PROTOS / "released"
IMAGE_NAME = re.compile(r"humanline-v(\d+)\.(\d+)\.(\d+)\.json")


def _make_variables(*names: str) -> dict[str, str]:
    """The values the Makefile gives `names`, as make computes them."""
    if shutil.which("make") is None:
        _unavailable("make")
    # Outside any make this runs under (`make test`): its jobserver flags mean nothing here.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    printed = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", "print-%: ; @echo '$*=$($*)'"]
        + [f"print-{name}" for name in names],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    return dict(line.split("=", 1) for line in printed.stdout.splitlines())


def _unavailable(tool: str) -> None:
    message = f"{tool} is not on PATH: the buf checks cannot run here"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Finding:
    """One problem buf reports: its rule (`type`, e.g. FIELD_NO_DELETE) and its message."""

    type: str
    path: str
    message: str


@dataclass(frozen=True)
class Outcome:
    """How a buf command ended."""

    returncode: int
    findings: list[Finding]
    output: str

    def types(self) -> set[str]:
        return {f.type for f in self.findings}


Buf = Callable[..., Outcome]


@pytest.fixture(scope="module")
def buf_command() -> list[str]:
    """The command the Makefile runs buf with."""
    if shutil.which("npx") is None:
        _unavailable("npx")
    return _make_variables("BUF")["BUF"].split()


@pytest.fixture(scope="module")
def buf(buf_command: list[str]) -> Buf:
    """Runs buf as `make api-check` does, in a module directory, with findings as JSON."""

    def run(module: Path, *args: str) -> Outcome:
        done = subprocess.run(
            [*buf_command, *args, "--error-format", "json"],
            cwd=module,
            capture_output=True,
            text=True,
            timeout=120,
        )
        findings = [
            Finding(item["type"], item["path"], item["message"])
            for item in map(json.loads, done.stdout.splitlines())
        ]
        return Outcome(done.returncode, findings, done.stdout + done.stderr)

    return run


@pytest.fixture
def protos(tmp_path: Path) -> Path:
    """A copy of the buf module, to change."""
    copy = tmp_path / "protos"
    shutil.copytree(PROTOS, copy, ignore=shutil.ignore_patterns("released"))
    return copy


def _released() -> Path:
    """The newest committed release image, by version."""
    images = [p for p in RELEASES.glob("humanline-v*.json") if IMAGE_NAME.fullmatch(p.name)]
    assert images, f"no release image in {RELEASES.relative_to(ROOT)}: run `make proto-release`"
    return max(images, key=_version_of)


def _version_of(image: Path) -> tuple[int, ...]:
    found = IMAGE_NAME.fullmatch(image.name)
    assert found is not None
    return tuple(int(part) for part in found.groups())


def _edit(protos: Path, file: str, old: str, new: str) -> None:
    """Replaces the one occurrence of `old` in `file`: a test whose edit no longer applies
    fails here rather than passing without its change."""
    path = protos / file
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {file} exactly once"
    path.write_text(text.replace(old, new))


def _remove_a_field(protos: Path) -> None:
    _edit(
        protos,
        "humanline/v1/agent_service.proto",
        "  // Free-text notes, up to 4000 characters. Stored, never logged.\n  string notes = 5;\n",
        "",
    )


def _rename_an_rpc(protos: Path) -> None:
    _edit(
        protos,
        "humanline/v1/handoff_service.proto",
        "rpc GetHandoff(GetHandoffRequest)",
        "rpc FetchHandoff(GetHandoffRequest)",
    )


def _move_a_message_to_another_file(protos: Path) -> None:
    """Breaks clients that import the message from its file (FILE rules), though its
    package and name stay (PACKAGE rules would let it pass)."""
    message = (
        "// Response for HandoffService.RecordFeedback.\n"
        "message RecordFeedbackResponse {\n"
        "  // The handoff, with its feedback.\n"
        "  Handoff handoff = 1;\n"
        "}\n"
    )
    _edit(protos, "humanline/v1/handoff_service.proto", message, "")
    handoff = protos / "humanline/v1/handoff.proto"
    handoff.write_text(handoff.read_text() + "\n" + message)


BREAKS = {
    "a field removed": (_remove_a_field, "FIELD_NO_DELETE", '"notes"'),
    "an RPC renamed": (_rename_an_rpc, "RPC_NO_DELETE", '"GetHandoff"'),
    "a message moved to another file": (
        _move_a_message_to_another_file,
        "MESSAGE_NO_DELETE",
        '"RecordFeedbackResponse"',
    ),
}


def test_the_protos_as_they_are_pass_breaking_against_the_release(buf: Buf, protos: Path) -> None:
    outcome = buf(protos, "breaking", "--against", str(_released()))
    assert outcome.returncode == 0, outcome.output
    assert outcome.findings == []


@pytest.mark.parametrize("change", list(BREAKS))
def test_breaking_fails_naming_the_break(buf: Buf, protos: Path, change: str) -> None:
    edit, rule, name = BREAKS[change]
    edit(protos)
    outcome = buf(protos, "breaking", "--against", str(_released()))
    assert outcome.returncode != 0
    assert [f for f in outcome.findings if f.type == rule and name in f.message], outcome.output


def test_breaking_ignores_the_vendored_google_protos(buf: Buf, protos: Path) -> None:
    _edit(protos, "google/rpc/code.proto", "  OUT_OF_RANGE = 11;\n", "")
    outcome = buf(protos, "breaking", "--against", str(_released()))
    assert outcome.returncode == 0, outcome.output


def test_the_protos_as_they_are_pass_lint(buf: Buf, protos: Path) -> None:
    outcome = buf(protos, "lint")
    assert outcome.returncode == 0, outcome.output
    assert outcome.findings == []


def test_lint_fails_on_a_message_without_a_comment(buf: Buf, protos: Path) -> None:
    handoff = protos / "humanline/v1/handoff.proto"
    handoff.write_text(handoff.read_text() + "\nmessage Undocumented {\n  string name = 1;\n}\n")
    outcome = buf(protos, "lint")
    assert outcome.returncode != 0
    assert "COMMENT_MESSAGE" in outcome.types(), outcome.output
    assert any('"Undocumented"' in f.message for f in outcome.findings), outcome.output


def test_buf_leaves_the_release_images_out_of_the_module(buf_command: list[str]) -> None:
    """The images sit in protos/ but are no part of what buf lints or compares."""
    listed = subprocess.run(
        [*buf_command, "ls-files"],
        cwd=PROTOS,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    assert listed, "buf lists no files"
    assert all(name.endswith(".proto") for name in listed), listed


def test_make_checks_against_the_newest_release_no_newer_than_the_version() -> None:
    made = _make_variables("RELEASED", "VERSION")
    released = _released()
    assert made["RELEASED"] == str(released.relative_to(ROOT))
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert made["VERSION"] == version
    assert _version_of(released) <= tuple(int(part) for part in version.split("."))


def test_the_release_image_is_a_buf_image_of_the_humanline_services() -> None:
    image = json.loads(_released().read_text())
    services = {
        service["name"]
        for file in image["file"]
        if file["name"].startswith("humanline/v1/")
        for service in file.get("service", [])
    }
    assert services == {"AgentService", "HandoffService", "PoolService"}
