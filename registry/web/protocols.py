"""Protocol pages: a protocol and its purposes, loading a file, changing a status."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from protocols.model import ProtocolStatus
from registry.errors import Invalid, RegistryError
from registry.extension import current_store
from registry.http_errors import status_of
from registry.web.common import form_time, page_directory
from registry.web.signin import current_user, page_actor, signed_in

bp = Blueprint("protocols", __name__, url_prefix="/protocols")

STATUSES = [s.value for s in ProtocolStatus]
#: The same limit as the API's: a protocol file is edited by hand.
YAML_MAX = 1024 * 1024


def _protocol_page(protocol_id: str, error: RegistryError | None = None,
                   status: int = 200) -> tuple[str, int]:
    directory, latest = page_directory()
    protocol = directory.protocol(protocol_id)
    if protocol is None:
        abort(404, "no such protocol at this version")
    orgs = [directory.organisation(o) for o in sorted(protocol.signatories)]
    return render_template("protocol.html", directory=directory, latest=latest,
                           protocol=protocol, signatories=[o for o in orgs if o is not None],
                           statuses=STATUSES, error=error), status


@bp.get("/<protocol_id>")
@signed_in()
def protocol(protocol_id: str) -> tuple[str, int]:
    return _protocol_page(protocol_id)


@bp.post("/<protocol_id>/status")
@signed_in("admin")
def set_status(protocol_id: str) -> Response | tuple[str, int]:
    try:
        version = current_store().set_protocol_status(
            protocol_id, request.form.get("status", ""),
            effective_from=form_time("effective_from"), ends_at=form_time("ends_at"),
            actor=page_actor())
    except RegistryError as e:
        return _protocol_page(protocol_id, e, status_of(e))
    flash(f"Status changed; registry version {version}.")
    return redirect(url_for("protocols.protocol", protocol_id=protocol_id))


def _load_page(error: RegistryError | None = None, text: str = "",
               status: int = 200) -> tuple[str, int]:
    return render_template("load_protocol.html", error=error, text=text,
                           user=current_user()), status


@bp.route("/load", methods=["GET", "POST"])
@signed_in("admin")
def load() -> Response | tuple[str, int]:
    if request.method == "GET":
        return _load_page()
    upload = request.files.get("file")
    text = request.form.get("yaml", "")
    if upload is not None and upload.filename:
        raw = upload.read(YAML_MAX + 1)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _load_page(Invalid("the file is not UTF-8 text", {"file": ["UTF-8"]}),
                              status=422)
    if not text.strip() or len(text) > YAML_MAX:
        return _load_page(Invalid("paste a protocol file or choose one to upload",
                                  {"yaml": ["between 1 byte and 1 MiB"]}), text, 422)
    store = current_store()
    try:
        version = store.load_protocol(text, actor=page_actor(), source="upload")
    except RegistryError as e:
        return _load_page(e, text, status_of(e))
    detail = store.change(version).detail
    flash(f"Loaded {detail['protocol']} version {detail['protocol_version']}; "
          f"registry version {version}.")
    return redirect(url_for("protocols.protocol", protocol_id=detail["protocol"]))
