"""The registry's web pages in Chromium: sign in, read a protocol, revoke a key, CSRF."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from registry_site import Site

pytestmark = pytest.mark.browser


def sign_in(page: Page, site: Site, token: str) -> None:
    page.goto(site.url + "/")
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_and_read_the_protocol_and_its_purposes(page: Page, site: Site) -> None:
    sign_in(page, site, site.admin)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Signed in as admin")
    link = page.get_by_role("rowheader").get_by_role(
        "link", name="West Yorkshire Inter Agency Information Sharing Protocol (2016)")
    # Its review date (2019) has passed: the overview says so.
    expect(page.locator("#warn-review")).to_contain_text("review was due 2019-04-01")
    expect(link).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("wy-iisp-2016"))).to_contain_text(
        "in force")
    link.click()
    purposes = page.get_by_role("table", name=re.compile("What may be shared"))
    expect(purposes.get_by_role("row")).to_have_count(11)
    row = purposes.get_by_role("row", name=re.compile("section-47-enquiry"))
    expect(row).to_contain_text("front-door, police-safeguarding → front-door, "
                                "police-safeguarding")
    expect(row).to_contain_text("child-significant-harm")
    referral = purposes.get_by_role("row", name=re.compile("safeguarding-referral"))
    expect(referral).to_contain_text("when consent is refused")
    expect(referral).to_contain_text("may be withheld")


def test_a_wrong_token_does_not_sign_in(page: Page, site: Site) -> None:
    sign_in(page, site, "isr_not-a-token")
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    page.goto(site.url + "/keys")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/keys"))


def test_a_post_without_the_csrf_token_is_refused(page: Page, site: Site) -> None:
    sign_in(page, site, site.admin)
    kid = site.key_ids[1]
    # The same browser, signed in, with its session cookie: only the token is missing.
    answer = page.request.post(f"{site.url}/keys/{kid}/revoke",
                               form={"reason": "forged"}, max_redirects=0)
    assert answer.status == 400
    forged = page.request.post(f"{site.url}/keys/{kid}/revoke",
                               form={"reason": "forged", "csrf_token": "guess"},
                               max_redirects=0)
    assert forged.status == 400
    key = site.store.directory().key(kid)
    assert key is not None and key.revoked_at is None


def test_an_auditor_reads_but_gets_no_forms(page: Page, site: Site) -> None:
    sign_in(page, site, site.auditor)
    page.get_by_role("link", name="Keys").click()
    expect(page.get_by_role("table", name="Registered public keys")).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("^Revoke"))).to_have_count(0)
    expect(page.get_by_role("link", name="Tokens")).to_have_count(0)
    page.goto(site.url + "/organisations")
    expect(page.get_by_text("Add a unit to")).to_have_count(0)
    page.goto(site.url + "/tokens")
    expect(page.get_by_role("heading", name="this page is for administrators")).to_be_visible()


def test_pages_run_no_script_under_their_policy(page: Page, site: Site) -> None:
    sign_in(page, site, site.admin)
    answer = page.goto(site.url + "/keys")
    assert answer is not None
    policy = answer.headers["content-security-policy"]
    assert "script-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert page.locator("script").count() == 0
