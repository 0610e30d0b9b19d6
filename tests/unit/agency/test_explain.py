"""Every refusal's sentence names what to change (pure: the directory of the protocol file)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from registry_testing import wy_text

from agency.gateway.explain import Ask, explain
from keys import SigningKeyPair
from protocols.model import Directory
from protocols.reasons import Reason
from registry.store import Store

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Directory:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('x') / 'r.db'}",
                  signing_key=SigningKeyPair.generate())
    store.initialise(actor="t")
    store.load_protocol(wy_text(), actor="t")
    return store.directory()


def _ask(**kw: object) -> Ask:
    base: dict[str, object] = dict(
        unit="leeds-cc/education-safeguarding", kind="referral", protocol="wy-iisp-2016",
        purpose="early-help", recipient="leeds-cc/early-help", categories=["education"],
        consent="not_sought", ground=None, subject_informed=True, in_reply_to=None,
        signing_key="fa68" + "0" * 28)
    base.update(kw)
    return Ask(**base)  # type: ignore[arg-type]


def test_the_sentences_say_what_to_change(directory: Directory) -> None:
    assert explain("recipient_not_permitted", _ask(purpose="police-intelligence",
                                                   recipient="wy-police/intel-bureau"),
                   directory, NOW).startswith(
        "wy-police/intel-bureau is not a unit of the protocol: choose one of")
    assert "your signing key fa68" in explain("key_not_valid", _ask(), directory, NOW)
    assert "is not registered" in explain("key_not_valid", _ask(), directory, NOW)
    assert "needs the consent" in explain("consent_required", _ask(), directory, NOW)
    ground = explain("ground_not_permitted", _ask(purpose="marac-referral",
                                                  ground="serious-crime"), directory, NOW)
    assert "adult-serious-harm, child-significant-harm" in ground
    cats = explain("category_not_permitted", _ask(categories=["intelligence"]), directory, NOW)
    assert cats.startswith("intelligence may not be shared for early-help")


def test_every_reason_has_a_sentence(directory: Directory) -> None:
    for reason in Reason:
        text = explain(reason.value, _ask(), directory, NOW)
        assert text and "Traceback" not in text
