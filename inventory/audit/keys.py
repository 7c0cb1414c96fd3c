"""The audit key and the audit head: outside the database, so that database access alone cannot rewrite the log.

The key file (``audit.key_file`` in the config; default ``<user data dir>/inventory/audit/<database id>.key``,
named by the id migration 0012 stored in the database: one key and head per database, not per OS user)
holds 32 random bytes, created on first use with mode 0600. Every entry carries
``mac = HMAC-SHA256(key, "<seq>\\n<entry_hash>")``: whoever can write the database but
cannot read the key cannot re-chain an edited tail. The same key peppers API token
hashes (inventory/tokens.py).

The head file (``audit.head_file``; default ``<database id>.head`` beside the default key, else the key file's
name + ``.head``) holds the newest entry's seq and hash,
advanced after every append under a file lock and never moved back: ``audit verify``
reports a log that ends before its head as truncated. One key per database, the same on every
machine that writes to it; each machine's head file sees only its own appends, so the database
keeps the head all of them share as well (``inventory/audit/head.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inventory.errors import ConfigError

log = logging.getLogger(__name__)

KEY_BYTES = 32


def legacy_key_path() -> Path:
    """The one key per OS user of versions before 0012_applied_policy (adopted by the database it signed)."""
    from platformdirs import user_data_path

    return user_data_path("inventory") / "audit.key"


def default_key_path(database_id: str) -> Path:
    """The default key of the database with this id (``database_identity``); its head is ``<id>.head`` beside it."""
    from platformdirs import user_data_path

    return user_data_path("inventory") / "audit" / f"{database_id}.key"


@dataclass(frozen=True)
class AuditHead:
    seq: int
    entry_hash: str
    # HMAC under the audit key in the head's own domain (``head_mac``): not an entry's mac, so that a head
    # cannot be made from any entry of the log by whoever lacks the key. None in head files of older versions.
    mac: str | None = None


class AuditSecrets:
    """The key (read once, created on first use) and the head file of one database's audit log."""

    def __init__(self, key_file: str | os.PathLike[str], head_file: str | os.PathLike[str] | None = None) -> None:
        self.key_file = Path(key_file).expanduser()
        # Elsewhere where the key is mounted read-only (a Kubernetes Secret) and the head needs a writable volume.
        self.head_file = (
            Path(head_file).expanduser() if head_file else self.key_file.with_name(self.key_file.name + ".head")
        )
        self._key: bytes | None = None

    def key(self, *, create: bool = True) -> bytes | None:
        if self._key is None:
            self._key = self._read_or_create(create)
        return self._key

    def _read_or_create(self, create: bool) -> bytes | None:
        try:
            data = self.key_file.read_bytes()
        except FileNotFoundError:
            if not create:
                return None
            return self._create()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the audit key: {exc.strerror}", path=str(self.key_file), key="audit.key_file"
            ) from None
        if len(data) < KEY_BYTES:
            raise ConfigError(
                f"the audit key holds {len(data)} bytes; at least {KEY_BYTES} are needed", path=str(self.key_file)
            )
        return data

    def _create(self) -> bytes:
        key = secrets.token_bytes(KEY_BYTES)
        try:
            self.key_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it meanwhile
            return self._read_or_create(False) or key
        except OSError as exc:
            raise ConfigError(
                f"cannot create the audit key: {exc.strerror}", path=str(self.key_file), key="audit.key_file"
            ) from None
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        return key

    def keyed_digest(self, purpose: str, text: str) -> str:
        key = self.key()
        assert key is not None
        return hmac.new(key, f"{purpose}\n{text}".encode(), hashlib.sha256).hexdigest()

    def mac(self, seq: int, entry_hash: str) -> str:
        return self.keyed_digest("audit", f"{seq}\n{entry_hash}")

    def head_mac(self, seq: int, entry_hash: str) -> str:
        return self.keyed_digest("audit-head", f"{seq}\n{entry_hash}")

    def head_text(self, seq: int, entry_hash: str) -> str:
        """The head file's content: the newest seq and hash, signed when the key exists."""
        record: dict[str, Any] = {"seq": seq, "entry_hash": entry_hash}
        if self.key(create=False) is not None:
            record["mac"] = self.head_mac(seq, entry_hash)
        return json.dumps(record) + "\n"

    def head_signed(self, head: AuditHead) -> bool:
        """Whether the head was written by a holder of the key (False without a key)."""
        return (
            head.mac is not None
            and self.key(create=False) is not None
            and hmac.compare_digest(head.mac, self.head_mac(head.seq, head.entry_hash))
        )

    def read_head(self) -> AuditHead | None:
        try:
            raw: Any = json.loads(self.head_file.read_text(encoding="utf-8"))
            mac = raw.get("mac")
            return AuditHead(int(raw["seq"]), str(raw["entry_hash"]), str(mac) if mac is not None else None)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"unreadable audit head ({type(exc).__name__})", path=str(self.head_file)) from None

    @contextmanager
    def head_lock(self) -> Iterator[None]:
        """The head file's own lock (a file beside it): whoever reads and then moves the head holds it."""
        import fcntl

        self.head_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.head_file.with_name(self.head_file.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def write_head(self, seq: int, entry_hash: str) -> None:
        """Replace the head file at once (a reader sees the old head or the new one); under ``head_lock``."""
        scratch = self.head_file.with_name(self.head_file.name + ".new")
        scratch.write_text(self.head_text(seq, entry_hash), encoding="utf-8")
        os.replace(scratch, self.head_file)

    def advance_head(self, seq: int, entry_hash: str) -> None:
        """Record a committed entry as the head, unless a newer one is recorded already (and signed, if keyed)."""
        with self.head_lock():
            current = self.read_head()
            if (
                current is not None
                and current.seq >= seq
                and (current.mac is not None or self.key(create=False) is None)
            ):
                return
            self.write_head(seq, entry_hash)


def secrets_for(db: Any) -> AuditSecrets:
    """The audit secrets attached to a Database (``attach``), else the database's own (``database_secrets``)."""
    found = getattr(db, "audit_secrets", None)
    if found is None:
        found = database_secrets(db, head_file=getattr(db, "audit_head_file", None))
        if found.key_file == legacy_key_path():
            return found  # a schema from before database ids: decided again once it is migrated
        attach(db, found)
        db.audit_secrets_by_identity = True  # not the config's: a restore may name another database's
    return found


def database_secrets(db: Any, *, head_file: str | os.PathLike[str] | None = None) -> AuditSecrets:
    """The key and head named by the database's id, adopting the per-user key of older versions where it signed.

    A database with signed entries never gets a new key: a key that would not verify them is refused
    (ConfigError naming where the key is looked for), never created beside them.
    """
    from inventory.audit.identity import database_id, newest_signed_entry

    identity = database_id(db)
    if identity is None:  # not migrated to 0012 yet (`db upgrade` is about to): the key of older versions
        return AuditSecrets(legacy_key_path(), head_file)
    found = database_key(identity, head_file=head_file)
    key_file = found.key_file
    if key_file.exists():
        return found
    signed = newest_signed_entry(db)
    if signed is None:
        return found  # nothing signed yet: the key is created on first use
    legacy = AuditSecrets(legacy_key_path())
    legacy_key = legacy.key(create=False) if legacy.key_file.exists() else None
    if legacy_key is not None and hmac.compare_digest(legacy.mac(signed.seq, signed.entry_hash), signed.mac):
        _adopt(db, legacy, found, signed.seq, signed.entry_hash, own_head=head_file is None)
        return found
    raise ConfigError(
        f"database {db.display_url} (id {identity}) holds audit entries signed by a key that is neither at "
        f"{key_file} nor at {legacy.key_file}: copy that key to {key_file} or name it with audit.key_file "
        "(a new key would not verify them, so none is made)",
        key="audit.key_file",
    )


def database_key(identity: str, *, head_file: str | os.PathLike[str] | None = None) -> AuditSecrets:
    """The default key and head of the database with this id (a restore names them from its backup's manifest)."""
    key_file = default_key_path(identity)
    return AuditSecrets(key_file, head_file or key_file.with_name(f"{identity}.head"))


def _adopt(db: Any, legacy: AuditSecrets, found: AuditSecrets, seq: int, entry_hash: str, *, own_head: bool) -> None:
    """Copy the per-user key that signed this database to the database's own name, with a head for this database.

    The per-user head file is this database's when the entry it names is here; else it was another
    database's (two demos shared it) and the head starts at the newest signed entry, which the key verified.
    """
    from inventory.audit.identity import entry_hash_at

    key = legacy.key(create=False)
    assert key is not None
    found.key_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(found.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process adopted it meanwhile
        return
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    log.info("audit key %s adopted for database %s as %s", legacy.key_file, db.display_url, found.key_file)
    if not own_head:
        return  # audit.head_file names the head: it stays as it is
    head = legacy.read_head()
    with found.head_lock():
        if head is not None and legacy.head_signed(head) and entry_hash_at(db, head.seq) == head.entry_hash:
            found.write_head(head.seq, head.entry_hash)
        else:
            log.warning(
                "the head file %s does not name an entry of %s (it was another database's): "
                "this database's head starts at its entry %s",
                legacy.head_file,
                db.display_url,
                seq,
            )
            found.write_head(seq, entry_hash)


def attach(db: Any, audit_secrets: AuditSecrets) -> None:
    db.audit_secrets = audit_secrets


def _account(uid: int) -> str | None:
    """The name of the account ``uid`` on this machine (None: no such account, e.g. a file mounted into a container)."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _owned_by_another(uid: int) -> str | None:
    """The other account of this machine that owns a file (None: this process's, root's, or no account's).

    Root-owned and account-less files are mounted secrets (Kubernetes, systemd credentials, a bind mount into a
    container): whoever can read them is meant to. A file of another account is that account's own key.
    """
    if uid in (os.geteuid(), 0):
        return None
    return _account(uid)


def ownership_problem(audit_secrets: AuditSecrets) -> str | None:
    """Why this process cannot own the audit key (None: it can): the key file, or when there is none yet the
    directory it would be created in, belongs to another account of this machine, or cannot be read.

    The CLI's direct mode asks this before it touches the key: it refuses instead of using another account's key
    or creating a second key beside a service's (a second key signs entries no one else can verify).
    """
    path = audit_secrets.key_file
    me = _account(os.geteuid()) or f"uid {os.geteuid()}"
    try:
        owner_uid = path.stat().st_uid
    except FileNotFoundError:
        try:
            directory_uid = path.parent.stat().st_uid
        except FileNotFoundError:
            return None  # created on first use, with its directories, as this account's own
        except PermissionError:
            return f"its directory {path.parent} is closed to {me}"
        other = _owned_by_another(directory_uid)
        return None if other is None else f"its directory {path.parent} belongs to {other}, not {me}"
    except PermissionError:
        return f"its directory {path.parent} is closed to {me}"
    other = _owned_by_another(owner_uid)
    if other is not None:
        return f"it belongs to {other}, not {me}"
    if not os.access(path, os.R_OK):
        return f"{me} cannot read it"
    return None


__all__ = [
    "AuditHead",
    "AuditSecrets",
    "attach",
    "database_key",
    "database_secrets",
    "default_key_path",
    "legacy_key_path",
    "ownership_problem",
    "secrets_for",
]
