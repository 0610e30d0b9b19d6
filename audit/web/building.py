"""Building a site's index: the first time, and again on an auditor's request."""

from __future__ import annotations

from audit.log_index import IndexProgress
from audit.web.site import LogSite

LIVE = "live"


def build(site: LogSite, progress: IndexProgress | None = None, *, force: bool = False) -> None:
    """Index (and so verify) the site's log: an export whole, a live log up to its newest
    checkpoint, from where the index left it (from seq 0 when ``force``d)."""
    if site.export is not None:
        site.index.build_export(site.export, progress, force=force)
        return
    assert site.live is not None
    if force or not site.index.resume(LIVE, site.live):
        site.index.reset(LIVE, evidence=True, live=True)
    site.index.follow(site.live, progress)


def rebuild(site: LogSite) -> None:
    with site._following:
        build(site, force=True)
