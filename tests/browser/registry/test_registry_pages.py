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
    link = page.get_by_role("link", name="West Yorkshire Inter Agency Information Sharing "
                                         "Protocol (2016)")
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


def test_revoke_a_key_through_the_form_and_see_it_in_history(page: Page, site: Site) -> None:
    sign_in(page, site, site.admin)
    page.get_by_role("link", name="Keys").click()
    kid = site.key_ids[0]
    row = page.locator(f"#key-{kid}")
    expect(row).to_contain_text("valid")
    row.get_by_label("Reason").fill("device lost")
    row.get_by_role("button", name=f"Revoke {kid[:8]}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Key {kid} revoked")
    expect(page.locator(f"#key-{kid}")).to_contain_text("device lost")
    expect(page.locator(f"#key-{kid}").get_by_role("button")).to_have_count(0)
    key = site.store.directory().key(kid)
    assert key is not None and key.revocation_reason == "device lost"

    page.get_by_role("link", name="History").click()
    latest = page.get_by_role("table", name=re.compile("Every change")).get_by_role(
        "row").nth(1)
    admin_id = site.store.authenticate(site.admin).id  # type: ignore[union-attr]
    expect(latest).to_contain_text("revoke key")
    expect(latest).to_contain_text(f"token:{admin_id}")
    expect(latest).to_contain_text("browser admin")
    expect(latest).to_contain_text(kid)


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
    expect(page.get_by_role("button", name=re.compile("^Revoke"))).to_have_count(0)
    expect(page.get_by_role("link", name="Tokens")).to_have_count(0)
    page.goto(site.url + "/tokens")
    expect(page.get_by_role("heading", name="this page is for administrators")).to_be_visible()
