"""An administrator's work in Chromium: add a unit, register its keys from their files,
revoke a key after a confirmation, read the history in words.

Screenshots of each step are taken on every run; ``INFOSHARE_UPDATE_SCREENSHOTS=1``
refreshes docs/screenshots/ with them (the README shows one).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from playwright.sync_api import Page, expect
from registry_site import Site
from screenshots import shot

from keys.cli import keys as keys_cli

pytestmark = pytest.mark.browser

PASSPHRASE = "correct horse battery staple"



def generate(out: Path, *args: str) -> None:
    result = CliRunner().invoke(keys_cli, ["generate", *args, "--out", str(out)],
                                env={"INFOSHARE_PASSPHRASE": PASSPHRASE})
    assert result.exit_code == 0, result.output


def sign_in(page: Page, site: Site) -> None:
    page.goto(site.url + "/sign-in")
    page.get_by_label("Token").fill(site.admin)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_add_a_unit_register_its_keys_revoke_one_and_read_the_history(
        page: Page, site: Site, tmp_path: Path) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, site)
    shot(page, "admin-overview")

    page.get_by_role("navigation").get_by_role("link", name="Organisations").click()
    leeds = page.locator("#org-leeds-cc")
    leeds.get_by_text("Add a unit to Leeds City Council").click()
    leeds.get_by_label("Unit id").fill("youth-justice")
    leeds.get_by_label("Name").fill("Youth Justice Service")
    leeds.get_by_label("Roles").fill("youth-justice")
    leeds.get_by_role("button", name="Add unit to leeds-cc").click()
    expect(page.get_by_role("status")).to_contain_text("Added unit leeds-cc/youth-justice")
    expect(page.locator("#unit-can-send")).to_contain_text("no valid signing or encryption")

    # Another unit's files are refused, with what to do instead.
    generate(tmp_path, "--unit", "leeds-cc/early-help")
    page.get_by_label("Signing key file").set_input_files(
        tmp_path / "leeds-cc.early-help.signing.pub")
    page.get_by_label("Encryption key file").set_input_files(
        tmp_path / "leeds-cc.early-help.encryption.pub")
    page.get_by_role("button", name="Register keys").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("unit leeds-cc/early-help, not a key of unit "
                                  "leeds-cc/youth-justice")
    expect(alert).to_contain_text("infoshare keys generate --unit leeds-cc/youth-justice")
    shot(page, "admin-refused-key-file")

    # Files offered for the other use are refused too.
    generate(tmp_path, "--unit", "leeds-cc/youth-justice")
    signing = tmp_path / "leeds-cc.youth-justice.signing.pub"
    encryption = tmp_path / "leeds-cc.youth-justice.encryption.pub"
    page.get_by_label("Signing key file").set_input_files(encryption)
    page.get_by_label("Encryption key file").set_input_files(signing)
    page.get_by_role("button", name="Register keys").click()
    expect(page.get_by_role("alert")).to_contain_text("offered as the signing key")

    page.get_by_label("Signing key file").set_input_files(signing)
    page.get_by_label("Encryption key file").set_input_files(encryption)
    page.get_by_role("button", name="Register keys").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Registered the keys of leeds-cc/youth-justice")
    expect(page.locator("#unit-can-send")).to_have_text("yes")
    table = page.get_by_role("table", name="Keys of leeds-cc/youth-justice")
    expect(table.get_by_role("row")).to_have_count(3)
    shot(page, "admin-unit-keys")

    encryption_row = table.get_by_role("row", name=re.compile("encryption"))
    encryption_row.get_by_role("link", name=re.compile("^Revoke")).click()
    expect(page.get_by_role("heading", name=re.compile("Revoke key .*\\?"))).to_be_visible()
    page.get_by_label("Reason").fill("laptop lost")
    shot(page, "admin-revoke-confirm")
    page.get_by_role("button", name=re.compile("^Revoke key")).click()
    expect(page.get_by_role("status")).to_contain_text("revoked")
    directory = site.store.directory()
    [enc] = directory.keys_of("leeds-cc/youth-justice", "encryption")
    assert enc.revocation_reason == "laptop lost"

    page.get_by_role("link", name="History").click()
    rows = page.get_by_role("table", name=re.compile("Every change")).get_by_role("row")
    expect(rows.nth(1)).to_contain_text(f"Revoked the encryption key {enc.key_id} of unit "
                                        "leeds-cc/youth-justice")
    expect(rows.nth(1)).to_contain_text("laptop lost")
    expect(rows.nth(2)).to_contain_text("Registered the signing and encryption keys of unit "
                                        "leeds-cc/youth-justice")
    expect(rows.nth(3)).to_contain_text("Added unit leeds-cc/youth-justice with roles "
                                        "youth-justice")
    for n in (1, 2, 3):
        expect(rows.nth(n)).to_contain_text("IG officer, Leeds City Council")
    expect(page.get_by_role("table")).not_to_contain_text("{")
    expect(page.get_by_role("table")).to_contain_text("Granted an auditor token")
    shot(page, "admin-history")


def test_the_last_broker_key_needs_a_second_confirmation(page: Page, site: Site,
                                                        tmp_path: Path) -> None:
    sign_in(page, site)
    expect(page.locator("#warn-broker")).to_be_visible()
    generate(tmp_path, "--broker")
    page.get_by_role("navigation").get_by_role("link", name="Keys").click()
    page.get_by_label("Broker key file").set_input_files(tmp_path / "broker.signing.pub")
    page.get_by_role("button", name="Register the broker's key").click()
    expect(page.get_by_role("status")).to_contain_text("Registered the broker's key")
    [broker] = site.store.directory().keys_of("broker", "signing", holder="broker")

    page.locator(f"#key-{broker.key_id}").get_by_role("link", name=re.compile("^Revoke")).click()
    expect(page.locator("#last-broker-warning")).to_contain_text("last valid key")
    page.get_by_label("Reason").fill("decommissioned")
    page.get_by_role("button", name=re.compile("^Revoke key")).click()
    expect(page.get_by_role("alert").first).to_contain_text("last valid key")
    assert site.store.directory().key(broker.key_id).revoked_at is None  # type: ignore[union-attr]
    page.get_by_label("Yes, revoke the broker's last key").check()
    page.get_by_role("button", name=re.compile("^Revoke key")).click()
    expect(page.get_by_role("status")).to_contain_text("revoked")
    assert site.store.directory().key(broker.key_id).revoked_at is not None  # type: ignore[union-attr]


def test_managers_are_registered_with_their_key_file(page: Page, site: Site,
                                                     tmp_path: Path) -> None:
    sign_in(page, site)
    page.get_by_role("navigation").get_by_role("link", name="Managers").click()
    page.get_by_label("Manager code").fill("lcc-hos-01")
    page.get_by_label("Organisation").select_option("leeds-cc")
    page.get_by_label("Title").fill("Head of Service, Children's Social Care")
    page.get_by_role("button", name="Register manager").click()
    expect(page.get_by_role("status")).to_contain_text("Registered manager lcc-hos-01")
    generate(tmp_path, "--manager", "lcc-hos-01", "--org", "bradford-mdc")
    generate(tmp_path, "--manager", "lcc-hos-01", "--org", "leeds-cc")
    row = page.locator("#manager-lcc-hos-01")
    row.get_by_label(re.compile("Key file")).set_input_files(
        tmp_path / "bradford-mdc.manager.lcc-hos-01.signing.pub")
    row.get_by_role("button", name="Register key of lcc-hos-01").click()
    expect(page.get_by_role("alert")).to_contain_text("not a key of manager lcc-hos-01 of "
                                                      "leeds-cc")
    row = page.locator("#manager-lcc-hos-01")
    row.get_by_label(re.compile("Key file")).set_input_files(
        tmp_path / "leeds-cc.manager.lcc-hos-01.signing.pub")
    row.get_by_role("button", name="Register key of lcc-hos-01").click()
    expect(page.get_by_role("status")).to_contain_text("Registered the signing key")
    expect(page.locator("#manager-lcc-hos-01")).not_to_contain_text("none")
