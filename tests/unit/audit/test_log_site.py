"""The log server and the auditors' pages over a real log and a real export (Flask's client).

A second reading of the specs checks the served tiles (tests/support/tlog_client.py)
and the served export (tests/support/spec_verifier.py).
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import spec_verifier
from audit_export import SIGNER, Built, lines, write_lines
from flask import Flask
from flask.testing import FlaskClient
from log_factories import draft, evidence, sha
from tlog_client import TlogClient

from audit import ReportFilters, report, verify
from audit.log_index import LogIndex
from audit.log_queries import csv_lines, rows, timeline
from audit.log_sources import ExportLog
from audit.web.app import create_app
from audit.web.auth import LocalToken
from audit.web.building import build
from audit.web.site import LogSite
from broker.transfer_log import TransferLog
from keys import NoteSigner, SigningKeyPair
from protocols import merkle

TOKEN = "auditor-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ORIGIN = "grown.example/transfer-log"
GROWN_KEY = NoteSigner(ORIGIN, SigningKeyPair.generate())


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransferLog]:
    """A log of 600 entries (two full tiles and a partial one), checkpoints at 300 and 600."""
    path = tmp_path_factory.mktemp("grown") / "log.db"
    log = TransferLog.open(f"sqlite:///{path}", signer=GROWN_KEY, origin=ORIGIN)
    now = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    for part in range(2):
        with log.batch() as lb:
            for i in range(part * 300, part * 300 + 300):
                ev = evidence(i)
                assert ev.header is not None
                lb.append(draft(i, header_sha256=sha(ev.header)), ev)
        log.checkpoint(now)
    yield log
    log.close()


def _app(site: LogSite) -> Flask:
    app = create_app(site)
    app.testing = True
    return app


@pytest.fixture(scope="module")
def live(grown: TransferLog, tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    site = LogSite(index=LogIndex(tmp_path_factory.mktemp("idx") / "i.sqlite",
                                  GROWN_KEY.verifier), auth=LocalToken(TOKEN), live=grown)
    build(site)
    return _app(site).test_client()


def _export_site(export: Path, index: Path) -> LogSite:
    site = LogSite(index=LogIndex(index, SIGNER.verifier), auth=LocalToken(TOKEN),
                   export=ExportLog(export))
    build(site)
    return site


@pytest.fixture(scope="module")
def pages(built: Built, tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    site = _export_site(built.export, tmp_path_factory.mktemp("pidx") / "i.sqlite")
    client = _app(site).test_client()
    _sign_in(client)
    return client


def _csrf(client: FlaskClient, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _sign_in(client: FlaskClient, token: str = TOKEN) -> int:
    r = client.post("/sign-in", data={"token": token, "csrf_token": _csrf(client, "/sign-in"),
                                      "next": "/timeline"})
    return r.status_code


def _fetch(client: FlaskClient):  # type: ignore[no-untyped-def]
    def fetch(path: str) -> bytes:
        r = client.get("/" + path, headers=AUTH)
        if r.status_code == 404:
            raise LookupError(path)
        assert r.status_code == 200, (path, r.status_code)
        return r.get_data()

    return fetch


# --- tlog-tiles ------------------------------------------------------------------------


def test_a_tlog_client_from_the_c2sp_text_reproduces_the_root(live: FlaskClient,
                                                              grown: TransferLog) -> None:
    client = TlogClient(_fetch(live), GROWN_KEY.verifier.line())
    origin, size, root = client.checkpoint()
    assert (origin, size) == (ORIGIN, 600)
    assert client.root(size) == root == grown.root(600)
    # 600 = 2 * 256 + 88: the level 1 tile is partial (2 hashes), so is the last level 0 one.
    assert "tile/1/000.p/2" in client.fetched and "tile/0/002.p/88" in client.fetched
    assert client.entries(size) == list(grown.entries(0, 600))


def test_hash_tiles_are_open_and_entry_bundles_need_a_token(live: FlaskClient) -> None:
    assert live.get("/tile/0/000").status_code == 200
    r = live.get("/tile/0/000")
    assert r.headers["Cache-Control"].endswith("immutable") and len(r.get_data()) == 8192
    refused = live.get("/tile/entries/000")
    assert refused.status_code == 401 and refused.json is not None
    assert live.get("/tile/entries/000", headers={"Authorization": "Bearer wrong"}
                    ).status_code == 401
    zipped = live.get("/tile/entries/000", headers={**AUTH, "Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"


@pytest.mark.parametrize("path", ["tile/0/003", "tile/0/002.p/89", "tile/1/000", "tile/2/000.p/1",
                                  "tile/0/002", "tile/00/000", "tile/0/2", "tile/x/000"])
def test_tiles_beyond_the_checkpoint_or_misspelt_do_not_exist(live: FlaskClient,
                                                              path: str) -> None:
    r = live.get("/" + path, headers=AUTH)
    assert r.status_code == 404 and r.json is not None


# --- the JSON API ----------------------------------------------------------------------


def test_an_entry_with_its_proof_and_evidence(live: FlaskClient, grown: TransferLog) -> None:
    doc = live.get("/api/v1/entries/123", headers=AUTH).json
    assert doc is not None and doc["tree_size"] == 600
    e = doc["entry"]
    assert e["entry"].encode() == next(grown.entries(123, 124))
    assert e["evidence"].encode() == next(grown.evidence_lines(123, 124))
    path = [bytes.fromhex(h) for h in e["inclusion_proof"]]
    assert merkle.verify_inclusion(bytes.fromhex(e["leaf_hash"]), 123, 600, path,
                                   grown.root(600))
    assert live.get("/api/v1/entries/600", headers=AUTH).status_code == 404
    assert live.get("/api/v1/entries/1").status_code == 401


def test_a_message_and_a_consistency_proof(live: FlaskClient, grown: TransferLog) -> None:
    mid = draft(7).message_id
    doc = live.get(f"/api/v1/messages/{mid}", headers=AUTH).json
    assert doc is not None and [e["seq"] for e in doc["entries"]] == [7]
    c = live.get("/api/v1/consistency?old=300&new=600", headers=AUTH).json
    assert c is not None
    assert merkle.verify_consistency(300, 600, grown.root(300), grown.root(600),
                                     [bytes.fromhex(h) for h in c["proof"]])
    for bad in ("old=601", "old=5&new=4", "old=-1", "old=1e3", "old=3&x=1", ""):
        r = live.get(f"/api/v1/consistency?{bad}", headers=AUTH)
        assert r.status_code == 422 and r.json is not None, bad


def test_the_live_index_follows_new_checkpoints(grown: TransferLog, tmp_path: Path) -> None:
    site = LogSite(index=LogIndex(tmp_path / "i.sqlite", GROWN_KEY.verifier),
                   auth=LocalToken(TOKEN), live=grown, follow_every=0)
    build(site)
    assert site.index.state().checkpoint_size == 600
    client = _app(site).test_client()
    assert client.get("/checkpoint").get_data(as_text=True).split("\n")[1] == "600"


def test_the_served_export_verifies_by_the_spec_alone(live: FlaskClient, grown: TransferLog,
                                                     tmp_path: Path) -> None:
    # The live site has no registry key: it cannot vouch for directories, so it refuses.
    r = live.get("/api/v1/export.tar", headers=AUTH)
    assert r.status_code == 503


def _served_tar(client: FlaskClient, query: str, into: Path) -> Path:
    """The export that ``/api/v1/export.tar?query`` serves, unpacked into ``into``."""
    r = client.get(f"/api/v1/export.tar{query}", headers=AUTH)
    assert r.status_code == 200
    data = r.get_data()
    assert int(r.headers["Content-Length"]) == len(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    (out,) = into.iterdir()
    return out


def test_the_tar_export_of_a_served_log(built: Built, tmp_path: Path) -> None:
    docs = built.directories
    site = LogSite(index=LogIndex(tmp_path / "i.sqlite", SIGNER.verifier),
                   auth=LocalToken(TOKEN), live=built.log, registry_key=built.w.registry.public,
                   fetch_directory=lambda v, _reader: docs[v])
    build(site)
    client = _app(site).test_client()
    out = _served_tar(client, "", tmp_path / "x")
    counts = spec_verifier.verify_export(str(out), name=SIGNER.verifier.name,
                                         public_key=SIGNER.pair.public)
    assert counts["entries"] == built.log.size() and counts["evidence"] == counts["entries"]
    assert verify(out, log_key=SIGNER.verifier).ok
    assert sorted(p.name for p in (out / "registry").iterdir()) == [
        "directory-7.json", "directory-8.json", "registry-key.pub"]

    slim = _served_tar(client, "?evidence=no", tmp_path / "slim")
    assert not (slim / "evidence.jsonl").exists()
    assert spec_verifier.verify_export(str(slim), name=SIGNER.verifier.name,
                                       public_key=SIGNER.pair.public)["evidence"] == 0
    assert verify(slim, log_key=SIGNER.verifier).ok

    for query in ("evidence=maybe", "evidence=yes&extra=1"):
        r = client.get(f"/api/v1/export.tar?{query}", headers=AUTH)
        assert r.status_code == 422 and r.json is not None
        assert r.json["message"].startswith("the query is not valid: ")


# --- pages ------------------------------------------------------------------------------


def test_pages_need_a_signed_in_auditor(built: Built, tmp_path: Path) -> None:
    client = _app(_export_site(built.export, tmp_path / "i.sqlite")).test_client()
    r = client.get("/timeline")
    assert r.status_code == 302 and "/sign-in" in r.headers["Location"]
    # A form without its CSRF token changes nothing.
    assert client.post("/sign-in", data={"token": TOKEN}).status_code == 400
    assert _sign_in(client, "wrong") == 401
    assert _sign_in(client) == 302
    page = client.get("/timeline")
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp
    assert "<script" not in page.get_data(as_text=True)


def test_the_timeline_counts_what_the_report_counts(pages: FlaskClient, built: Built) -> None:
    html = pages.get("/timeline?purpose=safeguarding-referral&decision=refused").get_data(
        as_text=True)
    expected = report(built.export, ReportFilters(purpose="safeguarding-referral",
                                                  decision="refused"))
    assert f"<strong>{len(expected.rows)}</strong> entries match" in html
    assert "The log verifies" in html


def test_the_csv_download_is_the_reports_csv(pages: FlaskClient, built: Built) -> None:
    got = pages.get("/timeline.csv?decision=refused&ground=child-significant-harm")
    want = report(built.export, ReportFilters(decision="refused",
                                              ground="child-significant-harm")).to_csv()
    assert got.status_code == 200 and got.get_data(as_text=True) == want


@pytest.mark.parametrize("filters", [
    ReportFilters(), ReportFilters(decision="routed"), ReportFilters(kind="response"),
    ReportFilters(reason="stale"), ReportFilters(consent="refused"),
    ReportFilters(organisation="leeds-cc"), ReportFilters(unit="leeds-cc/front-door"),
    ReportFilters(publisher="leeds-cc/front-door"),
    ReportFilters(date_from=datetime(2026, 11, 25).date()),
    ReportFilters(date_to=datetime(2026, 11, 24).date(), purpose="section-47-enquiry")])
def test_the_index_admits_what_the_report_admits(pages: FlaskClient, built: Built,
                                                  filters: ReportFilters,
                                                  tmp_path: Path) -> None:
    index = _export_site(built.export, tmp_path / "i.sqlite").index
    assert list(rows(index, filters)) == report(built.export, filters).rows
    assert "".join(csv_lines(index, filters)) == report(built.export, filters).to_csv()
    page = timeline(index, filters, per_page=3)
    assert page.total == len(report(built.export, filters).rows)


def test_an_entry_in_words_with_its_proof_and_replay(pages: FlaskClient, built: Built) -> None:
    html = pages.get("/entries/0").get_data(as_text=True)
    assert "shared a referral with" in html and "; routed." in html
    assert "<strong>Verified:</strong> seq 0 is in the tree of size" in html
    assert "decides routed, as logged" in html
    mid = built.ids["request"]
    assert pages.get(f"/messages/{mid}").status_code == 302


def test_charts_are_svg_without_script(pages: FlaskClient) -> None:
    for name in ("purpose-month", "refusals", "without-consent"):
        r = pages.get(f"/charts/{name}.svg?decision=refused")
        assert r.status_code == 200 and r.content_type == "image/svg+xml"
        assert b"<svg" in r.get_data() and b"<script" not in r.get_data()
    html = pages.get("/report").get_data(as_text=True)
    assert "Refusals by reason" in html and "<table" in html


def test_a_filter_naming_nothing_known_warns(pages: FlaskClient) -> None:
    html = pages.get("/timeline?purpose=no-such-purpose").get_data(as_text=True)
    assert "Warning: no purpose" in html
    assert pages.get("/timeline?from=yesterday").status_code == 422


def test_a_tampered_copy_names_its_failure(built: Built, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(built.export, tmp_path / "copy"))
    items = lines(copy / "entries.jsonl")
    items[2] = items[2].replace(b'"at":"2026-11-24T13:50:46Z"', b'"at":"2026-11-24T13:50:47Z"')
    write_lines(copy / "entries.jsonl", items)
    client = _app(_export_site(copy, tmp_path / "i.sqlite")).test_client()
    _sign_in(client)
    html = client.get("/timeline").get_data(as_text=True)
    assert "The log does NOT verify" in html, html
    assert "checkpoints.jsonl line 1" in html and "does not match entries 0..2" in html
    state = verify(copy, log_key=SIGNER.verifier)
    assert not state.ok and state.failure is not None and state.failure in html.replace(
        "&#39;", "'")
