"""The manifest beside a backup file: what it holds, from when, and the audit head it ends at, signed.

``FILE.manifest.json`` records the engine, the schema revision, when the backup was taken,
the audit head at that moment (newest seq and entry_hash, read inside the backup's own
snapshot), the file's size and sha256, and a mac under the audit key: a restore refuses a
backup whose manifest was edited, whose file was swapped, or that was signed by another key.
A sidecar, not a header, so that a plain SQLite backup stays a file `sqlite3` opens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inventory.audit.keys import AuditHead, AuditSecrets
from inventory.errors import StorageError, UsageError

FORMAT = "inventory-backup 1"
SUFFIX = ".manifest.json"
_MAC_PURPOSE = "backup-manifest"


def manifest_path(backup_file: Path) -> Path:
    return backup_file.with_name(backup_file.name + SUFFIX)


@dataclass(frozen=True)
class Manifest:
    engine: str  # sqlite | postgresql
    schema_revision: str
    taken_at: str  # ISO 8601, UTC
    audit_head: AuditHead | None
    file: str  # the backup file's name (the pair must stay together)
    size: int
    sha256: str
    compression: str  # none | gzip | pg_dump custom
    database: str  # the URL it was taken from, without its password
    # The database's id (database_identity), which names its default audit key; None in older manifests,
    # whose signed body has no such key (so that they still verify).
    database_id: str | None = None

    def body(self) -> dict[str, Any]:
        data = asdict(self)
        if data["database_id"] is None:
            del data["database_id"]
        data["format"] = FORMAT
        return data

    def canonical(self) -> str:
        return json.dumps(self.body(), sort_keys=True, separators=(",", ":"))

    def write(self, backup_file: Path, audit_secrets: AuditSecrets) -> Path:
        path = manifest_path(backup_file)
        data = {**self.body(), "mac": _mac(audit_secrets, self.canonical())}
        scratch = path.with_name(path.name + ".partial")
        scratch.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(scratch, path)
        return path


def _mac(audit_secrets: AuditSecrets, text: str) -> str:
    return audit_secrets.keyed_digest(_MAC_PURPOSE, text)


def file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def manifest_database_id(backup_file: Path) -> str | None:
    """The id of the database a backup was taken from, read before any key is chosen (the mac is checked later,
    with the key it names: a forged id only names a key that does not verify the manifest)."""
    try:
        raw = json.loads(manifest_path(backup_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # read_manifest says what is wrong with it
    found = raw.get("database_id") if isinstance(raw, dict) else None
    return found if isinstance(found, str) and found.isalnum() else None


def read_manifest(backup_file: Path, audit_secrets: AuditSecrets) -> Manifest:
    """The backup's manifest, checked: signed by this audit key, and describing exactly this file."""
    path = manifest_path(backup_file)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        head = raw.get("audit_head")
        manifest = Manifest(
            engine=str(raw["engine"]),
            schema_revision=str(raw["schema_revision"]),
            taken_at=str(raw["taken_at"]),
            audit_head=AuditHead(int(head["seq"]), str(head["entry_hash"])) if head else None,
            file=str(raw["file"]),
            size=int(raw["size"]),
            sha256=str(raw["sha256"]),
            compression=str(raw["compression"]),
            database=str(raw["database"]),
            database_id=str(raw["database_id"]) if raw.get("database_id") else None,
        )
        mac = str(raw["mac"])
        if raw.get("format") != FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {FORMAT!r}")
    except FileNotFoundError:
        raise UsageError(
            f"{path}: the backup's manifest is missing: keep it beside {backup_file.name} "
            "(it says what the backup holds and is signed with the audit key)"
        ) from None
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the backup's manifest: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a backup manifest ({type(exc).__name__}: {exc})") from None
    key = audit_secrets.key(create=False)
    if key is None:
        raise UsageError(
            f"{path}: the audit key {audit_secrets.key_file} is missing, and the backup is signed with it: "
            "copy the key file from the machine the backup was taken on (it is a secret and not part of the backup)"
        )
    if not hmac.compare_digest(mac, _mac(audit_secrets, manifest.canonical())):
        raise UsageError(
            f"{path}: the manifest is not signed by the audit key {audit_secrets.key_file}: it was edited, "
            "or the backup was taken under another key (copy the old machine's key file)"
        )
    try:
        size, sha256 = file_digest(backup_file)
    except OSError as exc:
        raise StorageError(f"{backup_file}: cannot read the backup: {exc.strerror}") from None
    if (size, sha256) != (manifest.size, manifest.sha256):
        raise UsageError(
            f"{backup_file}: the file is not the one its manifest describes ({size} bytes, the manifest says "
            f"{manifest.size}; sha256 differs): it was changed or truncated since the backup"
        )
    return manifest
