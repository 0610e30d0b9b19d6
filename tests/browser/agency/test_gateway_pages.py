"""The gateway's pages in Chromium: a school practitioner, a manager, a police officer.

A practitioner at a school tries an early-help referral without consent and is
told why before anything is sent; a MARAC referral with consent refused waits
for a manager, who approves it with the passphrase; a real router routes it
through a real RabbitMQ node; the police open it; the school sees it received;
the case record shows both. Screenshots of each page are taken on every run;
``INFOSHARE_UPDATE_SCREENSHOTS=1`` refreshes docs/screenshots/ with them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from gateway_world import POLICE_MARAC, SCHOOL, World, gateway_world
from playwright.sync_api import Browser, Page, expect
from screenshots import shot

from broker.node import RabbitNode

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CASE = "SCH-2026-042"


@pytest.fixture(scope="module")
def world(rabbit_node: RabbitNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with gateway_world(rabbit_node, tmp_path_factory.mktemp("gw-pages"),
                       "infoshare-test-pages") as w:
        yield w


def sign_in(browser: Browser, url: str, username: str, password: str) -> Page:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url + "/")
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.get_by_label("Name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    return page


def choose(page: Page, title: str) -> None:
    page.get_by_role("button", name=f"Choose: {title}").click()


def test_refused_early_help_then_an_approved_marac_referral_opened_by_the_police(
        browser: Browser, world: World) -> None:
    leeds, police = world.leeds.url, world.police.url
    page = sign_in(browser, leeds, "sam.teacher", "practitioner-pw-1")
    expect(page.get_by_role("heading", name="Share information: why?")).to_be_visible()

    # Early help without consent: told why at the check, before anything is sent.
    choose(page, "Early help assessment and team around the family")
    page.get_by_label("Your case reference").fill(CASE)
    page.get_by_label("identity").fill("Child at Park Road Primary")
    page.get_by_label("education").fill("Attendance falling since September")
    page.get_by_label("Consent not sought").check()
    page.get_by_label("They have been, or will be, told").check()
    page.get_by_label("Why this is shared").fill("Attendance and presentation concerns")
    page.get_by_role("button", name="Check before sending").click()
    expect(page.get_by_role("alert")).to_contain_text("consent_required")
    expect(page.get_by_role("alert")).to_contain_text("needs the consent of the child or family")
    expect(page.get_by_text("Nothing was sent.")).to_be_visible()
    assert world.transfer_log.size() == 0

    # MARAC with consent refused: the summary says a manager must approve.
    page.goto(f"{leeds}/compose?case={CASE}")
    choose(page, "Referral of a high-risk domestic abuse case to MARAC")
    page.get_by_label("Recipient").select_option(POLICE_MARAC)
    page.get_by_label("domestic-abuse").fill("Mother disclosed repeated assaults; DASH 16")
    page.get_by_label("Consent sought and refused").check()
    page.get_by_label("When not given").select_option("adult-serious-harm")
    page.get_by_label("They are not told").check()
    page.get_by_label("Why this is shared").fill("High risk; MARAC threshold met")
    shot(page, "compose")
    page.get_by_role("button", name="Check before sending").click()
    expect(page.get_by_text("A manager must approve this")).to_be_visible()
    expect(page.get_by_text(POLICE_MARAC)).to_be_visible()
    page.get_by_role("button", name="Send for approval").click()
    expect(page.locator("tr.awaiting_approval")).to_contain_text(
        "waiting for a manager's approval")

    # The manager approves; a wrong passphrase signs nothing.
    manager = sign_in(browser, leeds, "ali.manager", "manager-pw-1")
    expect(manager.get_by_role("heading", name="Waiting for your approval")).to_be_visible()
    expect(manager.get_by_text("High risk; MARAC threshold met")).to_be_visible()
    shot(manager, "approvals")
    manager.get_by_label("Your key's passphrase").fill("wrong passphrase")
    manager.get_by_role("button", name="Approve and countersign").click()
    expect(manager.get_by_text("nothing was signed")).to_be_visible()
    assert world.transfer_log.size() == 0
    manager.get_by_label("Your key's passphrase").fill("manager passphrase 1")
    manager.get_by_role("button", name="Approve and countersign").click()
    expect(manager.get_by_text("approved, countersigned")).to_be_visible()

    # Routed by the real router: the police open it; the receipt goes back.
    deadline = time.monotonic() + 30
    while world.transfer_log.size() < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    officer = sign_in(browser, police, "pat.officer", "practitioner-pw-2")
    officer.goto(f"{police}/inbox")
    for _ in range(100):
        if officer.locator("tr.received").count():
            break
        time.sleep(0.2)
        officer.reload()
    expect(officer.locator("tr.received")).to_contain_text(SCHOOL)
    shot(officer, "inbox")
    officer.get_by_role("link", name="Open").first.click()
    expect(officer.get_by_text("Mother disclosed repeated assaults; DASH 16")).to_be_visible()

    # The school sees it received; the case record shows the refusal and the referral.
    for _ in range(150):
        page.goto(f"{leeds}/sent")
        if page.locator("tr.receipted").count():
            break
        time.sleep(0.2)
    expect(page.locator("tr.receipted")).to_contain_text("received and opened by the recipient")
    page.goto(f"{leeds}/cases?case_reference={CASE}")
    expect(page.locator("tr.refused")).to_contain_text("early-help")
    expect(page.locator("tr.refused")).to_contain_text("consent_required")
    expect(page.locator("tr.receipted")).to_contain_text("marac-referral")
    shot(page, "case-record")
    assert world.transfer_log.size() == 2  # the referral and its receipt


def test_a_form_without_the_csrf_token_is_refused(browser: Browser, world: World) -> None:
    page = sign_in(browser, world.leeds.url, "sam.teacher", "practitioner-pw-1")
    response = page.request.post(f"{world.leeds.url}/not-shared",
                                 form={"case_reference": "X-1", "reasons": "r"})
    assert response.status == 400


def test_pages_forbid_inline_script(browser: Browser, world: World) -> None:
    page = browser.new_page()
    response = page.goto(world.leeds.url + "/sign-in")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
