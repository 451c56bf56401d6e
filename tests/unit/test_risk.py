"""Signals to urgency and proficiency floor, with reasons (domain/risk.py), and the signals'
validation."""

from __future__ import annotations

import math

import pytest

from humanline.domain.errors import InvalidArgument, Violations
from humanline.domain.model import HandoffReason, Urgency
from humanline.domain.risk import CustomerTier, RiskRules, Signals, assess
from humanline.domain.routing import PolicyBook
from humanline.domain.validation import check_signals

BOOK = PolicyBook()
DISPUTE = BOOK.choose("billing_dispute").policy
LOOKUP = BOOK.choose("order_lookup").policy
FRAUD = BOOK.choose("fraud").policy


def test_no_signals_keep_the_bots_urgency() -> None:
    decision = assess(Urgency.LOW, Signals(), LOOKUP)
    assert (decision.urgency, decision.urgency_reasons) == (Urgency.LOW, ())
    assert decision.explain() == "urgency LOW: as asked"


def test_distress_and_a_large_disputed_amount_make_it_high() -> None:
    signals = Signals(distress=True, disputed_amount=750)
    decision = assess(Urgency.NORMAL, signals, DISPUTE)
    assert decision.urgency is Urgency.HIGH
    assert decision.explain().startswith(
        "urgency HIGH (asked NORMAL): distress and disputed amount over 500"
    )
    assert decision.min_proficiency == DISPUTE.min_proficiency
    assert "policy floor 4" in decision.explain()


@pytest.mark.parametrize(
    ("requested", "signals", "policy", "urgency", "why"),
    [
        (Urgency.LOW, Signals(distress=True), LOOKUP, Urgency.NORMAL, "distress"),
        (Urgency.NORMAL, Signals(suspected_fraud=True), LOOKUP, Urgency.HIGH, "suspected fraud"),
        (
            Urgency.NORMAL,
            Signals(suspected_fraud=True, distress=True),
            FRAUD,
            Urgency.CRITICAL,
            "suspected fraud and distress",
        ),
        (
            Urgency.NORMAL,
            Signals(disputed_amount=9000),
            DISPUTE,
            Urgency.HIGH,
            "disputed amount over 5000",
        ),
        (
            Urgency.NORMAL,
            Signals(disputed_amount=9000, distress=True),
            DISPUTE,
            Urgency.CRITICAL,
            "distress and disputed amount over 5000",
        ),
        (Urgency.LOW, Signals(sentiment=-0.8), LOOKUP, Urgency.NORMAL, "sentiment -0.8"),
        (
            Urgency.LOW,
            Signals(),
            LOOKUP,
            Urgency.NORMAL,
            "repeated contact",
        ),
        (Urgency.LOW, Signals(tier=CustomerTier.VIP), LOOKUP, Urgency.NORMAL, "VIP customer"),
        (
            Urgency.LOW,
            Signals(tenure_days=3000),
            LOOKUP,
            Urgency.NORMAL,
            "long-standing customer",
        ),
        (Urgency.LOW, Signals(), FRAUD, Urgency.NORMAL, "fraud is high-risk"),
    ],
)
def test_each_rule_raises_the_urgency_and_says_why(
    requested: Urgency, signals: Signals, policy: object, urgency: Urgency, why: str
) -> None:
    reason = HandoffReason.REPEATED_CONTACT if why == "repeated contact" else HandoffReason.OTHER
    decision = assess(requested, signals, policy, reason=reason)  # type: ignore[arg-type]
    assert decision.urgency is urgency
    assert why in decision.urgency_reasons


def test_rules_raise_and_never_lower() -> None:
    calm = Signals(sentiment=0.9, tier=CustomerTier.STANDARD, bot_confidence=0.99)
    assert assess(Urgency.CRITICAL, calm, LOOKUP).urgency is Urgency.CRITICAL
    angry = Signals(distress=True, sentiment=-1)
    again = HandoffReason.REPEATED_CONTACT
    assert assess(Urgency.CRITICAL, angry, LOOKUP, reason=again).urgency is Urgency.CRITICAL
    # Raises add up, to CRITICAL at most.
    assert assess(Urgency.LOW, angry, LOOKUP, reason=again).urgency is Urgency.CRITICAL
    # A valued customer is raised only below HIGH.
    assert assess(Urgency.HIGH, Signals(tier=CustomerTier.VIP), LOOKUP).urgency_reasons == ()


def test_the_proficiency_floor_rises_for_fraud_and_an_unsure_bot() -> None:
    assert assess(Urgency.NORMAL, Signals(), LOOKUP).min_proficiency == 1
    fraud = assess(Urgency.NORMAL, Signals(suspected_fraud=True), LOOKUP)
    assert (fraud.min_proficiency, fraud.proficiency_reasons) == (4, ("suspected fraud",))
    low = HandoffReason.LOW_CONFIDENCE
    unsure = Signals(bot_confidence=0.1)
    decision = assess(Urgency.NORMAL, unsure, LOOKUP, reason=low)
    assert decision.min_proficiency == 2
    assert decision.proficiency_reasons == ("bot confidence 0.10",)
    sure = Signals(bot_confidence=0.9)
    assert assess(Urgency.NORMAL, sure, LOOKUP, reason=low).min_proficiency == 1
    critical = assess(Urgency.CRITICAL, Signals(), DISPUTE)
    assert critical.min_proficiency == 4
    assert assess(Urgency.NORMAL, unsure, FRAUD, reason=low).min_proficiency == 5  # 4 + 1


def test_thresholds_come_from_the_rules() -> None:
    rules = RiskRules(large_amount=100)
    signals = Signals(distress=True, disputed_amount=150)
    assert (
        "distress and disputed amount over 100"
        in assess(Urgency.NORMAL, signals, DISPUTE, rules).urgency_reasons
    )


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"sentiment": 1.5}, "signals.sentiment"),
        ({"sentiment": math.nan}, "signals.sentiment"),
        ({"bot_confidence": -0.1}, "signals.bot_confidence"),
        ({"disputed_amount": -5}, "signals.disputed_amount"),
        ({"disputed_amount": math.inf}, "signals.disputed_amount"),
        ({"tenure_days": -1}, "signals.tenure_days"),
    ],
)
def test_signals_out_of_range_are_violations(values: dict[str, float], field: str) -> None:
    v = Violations()
    given = {
        "sentiment": None,
        "disputed_amount": None,
        "tenure_days": None,
        "bot_confidence": None,
    }
    check_signals(v, "signals", **(given | values))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as refused:
        v.raise_if_any()
    assert [x.field for x in refused.value.violations] == [field]
