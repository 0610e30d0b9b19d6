"""Who is signed in to the pages: local accounts now, a council's single sign-on later.

The pages ask an :class:`Authenticator` for an :class:`Identity` and keep only
the username in the session; :class:`LocalAccounts` checks argon2id password
hashes held in the gateway's store. An OpenID Connect authenticator can take
its place: it maps a verified ID token to an account of the same name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from agency.gateway.home import write_registration
from agency.gateway.store import Account, GatewayStore
from keys import (
    SigningKeyPair,
    hash_password,
    sealed_private_key_text,
    sign_public_key_file,
    verify_password,
    write_public_key_file,
)

__all__ = ["Authenticator", "LocalAccounts", "make_account", "make_manager_account"]

ROLES = ("practitioner", "manager")
# Checked against when the name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY = hash_password("not a password of anyone")


class Authenticator(Protocol):
    def authenticate(self, username: str, password: str) -> Account | None: ...


class LocalAccounts:
    def __init__(self, store: GatewayStore) -> None:
        self._store = store

    def authenticate(self, username: str, password: str) -> Account | None:
        account = self._store.account(username)
        if account is None or account.disabled:
            verify_password(_DUMMY, password)
            return None
        return account if verify_password(account.password_hash, password) else None


def make_account(*, username: str, unit: str, role: str, password: str,
                 manager_id: str | None = None, manager_private: bytes | None = None,
                 manager_public: bytes | None = None,
                 manager_passphrase: str | None = None) -> Account:
    """An account; a manager's key is sealed with the manager's own passphrase."""
    if role not in ROLES:
        raise ValueError(f"role is one of {', '.join(ROLES)}")
    key_text = None
    if role == "manager":
        if not (manager_id and manager_private and manager_public and manager_passphrase):
            raise ValueError("a manager needs a manager id, a key and a passphrase")
        key_text = sealed_private_key_text(kind="signing", owner=unit.split("/")[0],
                                           private=manager_private, public=manager_public,
                                           passphrase=manager_passphrase.encode("utf-8"))
    return Account(username=username, unit=unit, role=role,
                   password_hash=hash_password(password), manager_id=manager_id,
                   manager_key=key_text, disabled=False)


def make_manager_account(public_dir: Path, *, username: str, unit: str, password: str,
                         manager_id: str, manager_passphrase: str) -> tuple[Account, Path]:
    """A manager's account with a signing key made now and sealed with the manager's own
    passphrase, and the key's public key file (``ORG.manager.ID.signing.pub``, with its
    proof of possession) and its registration request body (``ORG.manager.ID.keys.json``)
    written to ``public_dir`` for the registry's administrator.

    Raises:
        KeysError: ``manager_id`` is not a name, or the file exists already.
    """
    org = unit.split("/")[0]
    key = SigningKeyPair.generate()
    key_file = sign_public_key_file("manager", org, "signing", key.public, key,
                                    manager=manager_id)
    path = public_dir / f"{org}.manager.{manager_id}.signing.pub"
    write_public_key_file(path, key_file)
    write_registration(public_dir / f"{org}.manager.{manager_id}.keys.json",
                       {"signing": key_file})
    account = make_account(username=username, unit=unit, role="manager", password=password,
                           manager_id=manager_id, manager_private=key.seed,
                           manager_public=key.public, manager_passphrase=manager_passphrase)
    return account, path
