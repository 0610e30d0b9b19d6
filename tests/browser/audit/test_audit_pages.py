"""The auditors' pages in Chromium, over the log of a real router's exchange.

An auditor signs in with a registry token of role auditor, finds the exchange in
the timeline, filters it by purpose and decision, opens an entry and sees its
proof verified and its decision re-run, and downloads the CSV. Then a copy of
the log fetched with ``infoshare audit export --from`` is tampered with and
served with ``infoshare audit serve``: the verdict names the failure.

Screenshots of each step are taken on every run; ``INFOSHARE_UPDATE_SCREENSHOTS=1``
refreshes docs/screenshots/ with them (the README shows two).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from audited import Audited
from auditing_world import INFOSHARE, serving
from playwright.sync_api import Page, expect
from screenshots import shot

pytestmark = [pytest.mark.browser, pytest.mark.integration]




def sign_in(page: Page, url: str, token: str) -> None:
    page.goto(url + "/")
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_an_auditor_finds_filters_and_opens_the_exchange(page: Page, audited: Audited) -> None:
    sign_in(page, audited.url, audited.registry.tokens["auditor"])
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    # The registry's label for the token, never the token.
    expect(page.get_by_text("Data Protection Officer, audit 2026")).to_be_visible()
    verdict = page.get_by_role("region", name="Verification")
    expect(verdict).to_contain_text("The log verifies")
    expect(verdict).to_contain_text("4 entries match the newest checkpoint")
    expect(page.locator("#counts")).to_contain_text("4 entries match: 3 routed, 1 refused.")
    entries = page.get_by_role("table", name="Entries")
    expect(entries.get_by_role("row")).to_have_count(1 + 4)

    filters = page.get_by_role("form", name="Filters")
    filters.get_by_label("Purpose").fill("police-intelligence")
    filters.get_by_label("Decision").select_option("refused")
    filters.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"purpose=police-intelligence.*decision=refused"))
    expect(page.locator("#counts")).to_contain_text("1 entries match: 0 routed, 1 refused.")
    rows = entries.get_by_role("row")
    expect(rows).to_have_count(1 + 1)
    refused = rows.nth(1)
    expect(refused).to_contain_text("refused (stale)")
    expect(refused).to_contain_text("leeds-cc/childrens-social-care")
    shot(page, "audit-timeline")

    refused.get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Entry \d+$"))).to_be_visible()
    expect(page.locator("#words")).to_contain_text("Leeds City Council")
    expect(page.locator("#words")).to_contain_text("refused")
    proof = page.get_by_role("region", name="Inclusion proof")
    expect(proof).to_contain_text(re.compile(r"Verified: seq \d+ is in the tree of size 4"))
    expect(page.get_by_role("region", name="Replayed decision")).to_contain_text(
        "decides refused (stale), as logged")
    expect(page.get_by_role("region", name="Fields")).to_contain_text(audited.ids.stale)
    shot(page, "audit-entry")


def test_the_csv_download_holds_the_filtered_rows(page: Page, audited: Audited) -> None:
    sign_in(page, audited.url, audited.registry.tokens["auditor"])
    page.goto(audited.url + "/timeline?purpose=section-47-enquiry")
    expect(page.locator("#counts")).to_contain_text("2 entries match: 2 routed, 0 refused.")
    with page.expect_download() as download:
        page.locator("#counts").get_by_role("link", name="CSV").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["kind"], r["sender"], r["recipient"], r["decision"], r["message_id"])
            for r in rows] == [
        ("request", "wy-police/safeguarding-hub", "leeds-cc/front-door", "routed",
         audited.ids.request),
        ("response", "leeds-cc/front-door", "wy-police/safeguarding-hub", "routed",
         audited.ids.response)]
    assert {r["ground"] for r in rows} == {"child-significant-harm"}
    assert {r["publisher"] for r in rows} == {"wy-police.safeguarding-hub",
                                              "leeds-cc.front-door"}


def test_an_agency_token_does_not_sign_in(page: Page, audited: Audited) -> None:
    sign_in(page, audited.url, audited.registry.tokens["agency"])
    expect(page.get_by_role("alert")).to_contain_text(
        "only a registry token with role auditor may read the transfer log; this one is an "
        "agency's")
    page.goto(audited.url + "/timeline")
    expect(page).to_have_url(re.compile(r"/sign-in"))


def _infoshare(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFOSHARE_")}
    return subprocess.run([INFOSHARE, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_tampered_copy_of_the_log_names_its_failure(page: Page, audited: Audited) -> None:
    home = audited.home
    shutil.rmtree(home / "export", ignore_errors=True)
    fetched = _infoshare("audit", "export", "export", "--from", audited.url, "--token-file",
                         "auditor.token", "--log-key", "log-key.txt", "--registry-key",
                         "registry-key.pub", cwd=home)
    assert fetched.returncode == 0, fetched.stderr
    copy = Path(shutil.copytree(home / "export", home / "tampered"))
    entries = (copy / "entries.jsonl").read_bytes().split(b"\n")
    # The refusal rewritten as routed: the entry no longer hashes into the signed tree.
    stale = next(i for i, e in enumerate(entries) if audited.ids.stale.encode() in e)
    entries[stale] = entries[stale].replace(b'"decision":"refused","reason":"stale"',
                                            b'"decision":"routed","reason":null')
    (copy / "entries.jsonl").write_bytes(b"\n".join(entries))
    verified = _infoshare("audit", "verify", "tampered", "--log-key", "log-key.txt", cwd=home)
    assert verified.returncode == 1
    found = re.search(r"FAILED at (checkpoints\.jsonl line \d+): (.+)", verified.stderr)
    assert found, verified.stderr
    (home / "local.token").write_text("a token for this copy only\n")
    with serving(["audit", "serve", "tampered", "--log-key", "log-key.txt", "--registry-key",
                  "registry-key.pub", "--token-file", "local.token", "--port", "0"],
                 cwd=home) as url:
        sign_in(page, url, "a token for this copy only")
        verdict = page.get_by_role("alert").filter(has_text="The log does NOT verify")
        expect(verdict).to_be_visible()
        # The same failure `audit verify` names, at the same place.
        expect(verdict).to_contain_text(f"At {found.group(1)}")
        expect(verdict).to_contain_text(found.group(2))
        shot(page, "audit-tampered")
