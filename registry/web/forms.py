"""Reading page forms: uploaded public key files, roles typed as text."""

from __future__ import annotations

import re

from flask import request

from keys import KeyFileError, PublicKeyFile, parse_public_key_file
from keys._public import MAX_FILE_BYTES
from registry.errors import Invalid


def uploaded_key_files(*names: str) -> dict[str, PublicKeyFile]:
    """The public key files uploaded under ``names`` (empty inputs left out), by name.

    Raises:
        Invalid (``bad_key_file``): a file is not a public key file.
    """
    found: dict[str, PublicKeyFile] = {}
    for name in names:
        upload = request.files.get(name)
        if upload is None or not upload.filename:
            continue
        raw = upload.read(MAX_FILE_BYTES + 1)
        try:
            found[name] = parse_public_key_file(raw)
        except KeyFileError as e:
            raise Invalid(f"{upload.filename} is not a public key file", {name: [str(e)]},
                          code="bad_key_file") from e
    return found


def roles_field(name: str = "roles") -> list[str]:
    """Roles typed as text, separated by commas or spaces."""
    return [r for r in re.split(r"[,\s]+", request.form.get(name, "")) if r]
