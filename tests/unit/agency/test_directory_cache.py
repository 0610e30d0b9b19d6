"""The directory an agency keeps between sends: asked for again when old or when a refusal
might come from its age, never replaced by a lower version."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from envelope_factories import FRONT_DOOR, POLICE, PROTOCOL, REFERRAL, world

from agency.client import AgencyClient
from agency.directory_cache import DirectoryCache
from agency.errors import LocalRefusal
from protocols.model import Consent, Directory, GroundId


class Registry:
    """Directories served in turn, counting the requests."""

    def __init__(self, *directories: Directory) -> None:
        self.directories = list(directories)
        self.asked = 0
        self.down = False

    def __call__(self) -> Directory:
        self.asked += 1
        if self.down:
            raise ConnectionRefusedError("registry down")
        return self.directories[min(self.asked, len(self.directories)) - 1]


def _version(v: int, *, without: str | None = None) -> Directory:
    d = world().directory
    keys = tuple(k for k in d.keys if k.key_id != without)
    return dataclasses.replace(d, version=v, keys=keys)


def test_kept_until_old_asked_again_when_fresh_and_never_lower() -> None:
    registry = Registry(_version(7), _version(8), _version(6))
    cache = DirectoryCache(registry, max_age=60)
    assert cache.get().version == 7 and cache.get().version == 7 and registry.asked == 1
    assert cache.get(fresh=True).version == 8
    # A lower version (a replayed old directory) never replaces the one kept.
    assert cache.get(fresh=True).version == 8 and registry.asked == 3


def test_the_registry_down() -> None:
    registry = Registry(_version(7))
    stale = DirectoryCache(registry, max_age=0, stale_after=3600)
    strict = DirectoryCache(registry, max_age=0)
    stale.get(), strict.get()
    registry.down = True
    assert stale.get().version == 7  # the last one, while it is younger than stale_after
    with pytest.raises(ConnectionRefusedError):
        strict.get()


def test_a_send_refused_by_a_kept_directory_is_decided_again_with_the_current_one(
        tmp_path: Path) -> None:
    w = world()
    # Version 7 lacks the front door's encryption key, registered in version 8.
    registry = Registry(_version(7, without=w.door_enc.key_id), _version(8))
    client = AgencyClient(
        unit=POLICE,  # type: ignore[arg-type]
        amqp_url="amqp://west-yorkshire-police.police-safeguarding:x@127.0.0.1:1/v",
        signing_key=w.police_sign, encryption_keys=[w.police_enc],
        directory=DirectoryCache(registry, max_age=60), broker_key=w.broker.public,
        state_dir=tmp_path)

    def prepare() -> None:
        client.prepare(kind="referral", protocol=PROTOCOL, purpose=REFERRAL,
                       recipient=FRONT_DOOR, record={"concern": "x"}, reasons="r",
                       consent=Consent("not_sought", GroundId("child-significant-harm")),
                       subject_informed=False)

    prepare()  # the kept version 7 refuses (recipient_key_not_valid); version 8 permits
    assert registry.asked == 2
    prepare()  # version 8 is kept now: no more requests
    assert registry.asked == 2
    # A refusal the current directory confirms is raised, after one request.
    registry.directories = [_version(9, without=w.door_enc.key_id)]
    client._directories.get(fresh=True)
    with pytest.raises(LocalRefusal) as e:
        prepare()
    assert e.value.reason == "recipient_key_not_valid"
    client.close()
