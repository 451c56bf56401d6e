"""The Python examples in README.md and docs/ run as written, against a real server.

A runnable example is a ```python block whose first line is `# example: NAME.py`; with
`(runs until Ctrl-C)` after the name it is a long-running program (an agent's app) that the
following examples need. Each document's examples run in order, each as its own program with
the environment `make run` asks the reader to set up (HUMANLINE_TARGET and the tokens OPS,
BOT for the bot demo-bot, ALICE for the agent alice), against a fresh server per document.
Every one must exit 0 without a traceback; long-running ones once they have printed their
first line, are interrupted with SIGINT at the end, as Ctrl-C does, and must exit 0 too.
"""

from __future__ import annotations

import asyncio
import re
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from humanline.domain.access import Principal, Role
from humanline.grpc.server import TRY_AGENT, TRY_BOT
from tests.e2e.conftest import StartServer
from tests.e2e.process import KEYS, REPO, clean_environ, interruptible

pytestmark = pytest.mark.e2e

BLOCK = re.compile(
    r"^```python\n(# example: (\S+\.py)( \(runs until Ctrl-C\))?\n.*?)^```", re.M | re.S
)
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN_TIMEOUT = 60.0


@dataclass
class Example:
    name: str
    code: str
    background: bool


def examples(document: Path) -> list[Example]:
    return [
        Example(m.group(2), m.group(1), m.group(3) is not None)
        for m in BLOCK.finditer(document.read_text())
    ]


def test_the_readme_has_an_example_for_each_kind_of_caller() -> None:
    names = [e.name for e in examples(REPO / "README.md")]
    assert names == ["ops.py", "agent.py", "bot.py"]


@pytest.mark.parametrize(
    "document",
    [d for d in DOCUMENTS if examples(d)],
    ids=lambda d: str(d.relative_to(REPO)),
)
async def test_the_examples_run_as_written(
    document: Path, start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server()
    env = {
        **clean_environ(),
        "HUMANLINE_TARGET": server.target,
        "OPS": KEYS.issue(Principal(Role.OPS, "ops")),
        "BOT": KEYS.issue(Principal(Role.BOT, TRY_BOT)),
        "ALICE": KEYS.issue(Principal(Role.AGENT, TRY_AGENT)),
    }
    outputs: dict[str, str] = {}
    running: list[tuple[Example, asyncio.subprocess.Process]] = []
    try:
        for example in examples(document):
            path = tmp_path / example.name
            path.write_text(example.code)
            process = await asyncio.create_subprocess_exec(
                *interruptible(str(path)),
                cwd=tmp_path,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            if example.background:
                assert process.stdout is not None
                first = await asyncio.wait_for(process.stdout.readline(), RUN_TIMEOUT)
                assert first, f"{example.name} ended before printing anything"
                outputs[example.name] = first.decode()
                running.append((example, process))
                continue
            out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
            assert process.returncode == 0, f"{example.name}:\n{out.decode()}\n{err.decode()}"
            assert "Traceback" not in err.decode(), err.decode()
            outputs[example.name] = out.decode()
        for example, process in running:
            process.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
            assert process.returncode == 0, f"{example.name}:\n{out.decode()}\n{err.decode()}"
            assert "Traceback" not in err.decode(), err.decode()
            outputs[example.name] += out.decode()
    finally:
        for _, process in running:
            if process.returncode is None:
                process.kill()
                await process.wait()

    if document.name == "README.md":  # what each program says it did
        assert outputs["ops.py"].strip() == "1 agents, 0 waiting"
        assert "offer: billing_dispute: Charged twice" in outputs["agent.py"]
        assert "resolved" in outputs["agent.py"]
        assert "HANDOFF_STATE_ASSIGNED alice" in outputs["bot.py"]
        assert outputs["bot.py"].rstrip().endswith("completed and rated")
