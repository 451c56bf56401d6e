"""docs/status-codes.md keeps up with the API: every RPC of the protos has a section there,
naming each status code and each ErrorInfo reason its proto comment names; and every reason
the page names is one the code can send."""

from __future__ import annotations

import re
from pathlib import Path

import grpc

from humanline.domain.model import OfferState

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos" / "humanline" / "v1"
DOC = ROOT / "docs" / "status-codes.md"
SOURCE = ROOT / "src" / "humanline"
SERVICES = {"AgentService", "HandoffService", "PoolService"}
CODES = {code.name for code in grpc.StatusCode}

SERVICE = re.compile(r"^service (\w+) \{$(.*?)^\}$", re.MULTILINE | re.DOTALL)
RPC = re.compile(r"((?:^ *//.*\n)*) *rpc (\w+)\(", re.MULTILINE)
REASON_IN_COMMENT = re.compile(r"\breason ([A-Z][A-Z0-9_]*[A-Z0-9])")
WORD = re.compile(r"\b[A-Z][A-Z0-9_]*[A-Z0-9]\b")


def _rpc_comments() -> dict[tuple[str, str], str]:
    """Each RPC of the protos, by (service, rpc), with its comment as one line of text."""
    rpcs: dict[tuple[str, str], str] = {}
    for proto in sorted(PROTOS.glob("*.proto")):
        for service, body in SERVICE.findall(proto.read_text()):
            for comment, rpc in RPC.findall(body):
                lines = (line.strip().removeprefix("//").strip() for line in comment.splitlines())
                rpcs[service, rpc] = " ".join(lines)
    return rpcs


def _sections() -> dict[tuple[str, str], str]:
    """The page's `### Rpc` sections, by (service, rpc): the text up to the next heading."""
    sections: dict[tuple[str, str], str] = {}
    service, rpc, lines = "", "", list[str]()
    for line in [*DOC.read_text().splitlines(), "## end"]:
        if line.startswith(("## ", "### ")):
            if rpc:
                sections[service, rpc] = "\n".join(lines)
            rpc, lines = "", []
            name = line.split(" ", 1)[1].strip().strip("`")
            if line.startswith("## "):
                service = name
            else:
                rpc = name
        else:
            lines.append(line)
    return sections


def _reasons_sent() -> set[str]:
    """Every ErrorInfo reason the code can send: the string literals it gives as reasons, and
    those it makes from a kind or a state (`NotFound.of`, `Aborted.changed`, `OFFER_<state>`)."""
    text = "\n".join(
        path.read_text()
        for path in SOURCE.rglob("*.py")
        if not {"v1", "client"} & set(path.relative_to(SOURCE).parts)  # generated; the client's
    )
    reasons = set(re.findall(r"reason=\"([A-Z][A-Z0-9_]+)\"", text))
    reasons |= set(re.findall(r"default_reason = \"([A-Z][A-Z0-9_]+)\"", text))
    reasons |= set(re.findall(r"TokenError\(\s*f?\"[^\"]*\",\s*\"([A-Z_]+)\"", text))
    for kind in re.findall(r"NotFound\.of\(\"(\w+)\"", text):
        reasons.add(f"{kind.upper()}_NOT_FOUND")
    for kind in re.findall(r"Aborted\.changed\(\"(\w+)\"", text):
        reasons.add(f"{kind.upper()}_CHANGED")
    # An offer no longer pending is refused as OFFER_<its state>.
    reasons |= {f"OFFER_{s.value}" for s in OfferState if s is not OfferState.PENDING}
    # CompleteInteraction picks one of these by the offer's state.
    chosen = {"INTERACTION_REQUEUED", "INTERACTION_NOT_ACCEPTED"}
    assert all(f'"{reason}"' in text for reason in chosen)
    return reasons | chosen


def test_the_protos_have_the_three_services_and_their_rpcs() -> None:
    rpcs = _rpc_comments()
    assert {service for service, _ in rpcs} == SERVICES
    assert len(rpcs) >= 20
    assert all(comment for comment in rpcs.values())  # buf lint's COMMENTS holds them to it


def test_every_rpc_has_a_section_and_every_section_an_rpc() -> None:
    rpcs, sections = set(_rpc_comments()), set(_sections())
    assert sorted(rpcs - sections) == []
    assert sorted(sections - rpcs) == []  # nor a section of an RPC that is gone


def test_each_section_names_every_code_its_rpc_comment_names() -> None:
    sections = _sections()
    missing = {
        rpc: sorted(code for code in CODES & set(WORD.findall(comment)) if code not in words)
        for rpc, comment in _rpc_comments().items()
        for words in [set(WORD.findall(sections.get(rpc, "")))]
    }
    assert {rpc: codes for rpc, codes in missing.items() if codes} == {}


def test_each_section_names_every_reason_its_rpc_comment_names() -> None:
    sections = _sections()
    missing = {
        rpc: sorted(r for r in REASON_IN_COMMENT.findall(comment) if r not in words)
        for rpc, comment in _rpc_comments().items()
        for words in [set(WORD.findall(sections.get(rpc, "")))]
    }
    assert {rpc: reasons for rpc, reasons in missing.items() if reasons} == {}


def test_every_reason_the_page_names_is_one_the_code_sends() -> None:
    named = set(re.findall(r"`([A-Z][A-Z0-9_]*[A-Z0-9])`", DOC.read_text()))
    reasons = {word for word in named - CODES if not word.startswith("HUMANLINE_")}
    sent = _reasons_sent()
    assert len(reasons) >= 30
    assert sorted(reasons - sent) == []


def test_the_page_lists_every_reason_the_code_sends() -> None:
    """In its Reasons table. The default reasons that are code names (`NOT_FOUND`) and the
    base class's (`ERROR`) are left out: every error the code raises gives its own, but for
    a bad field's `INVALID_ARGUMENT`, which the table has."""
    table = DOC.read_text().split("\n## Reasons\n", 1)[1]
    listed = {
        word
        for line in table.splitlines()
        if line.startswith("| `")
        for word in re.findall(r"`([A-Z][A-Z0-9_]*[A-Z0-9])`", line.split("|")[1])
    }
    assert "INVALID_ARGUMENT" in listed
    assert sorted(_reasons_sent() - CODES - {"ERROR"} - listed) == []
