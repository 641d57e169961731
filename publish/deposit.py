"""Deposit a campaign in a Dataverse collection: export, describe, upload what is missing, publish.

``publish`` exports the campaign to ``<workdir>/publish/<name>.h5`` (trajectories split off beside
it, the files uploaded side by side, in the dataset's folder ``<name>/``, so the links hold) and keeps
what it learnt in ``<workdir>/publish/state.json``: per server URL and collection the dataset's
persistent id and the fingerprint of the metadata last sent, and the source of the export (never the
token). So a rerun after a failure resumes in the same draft, uploading only the files the draft lacks
or holds with another checksum (of the type the server reports), and a changed campaign becomes a new
version of the same dataset, without the files of the folder that the new export no longer has. The
dataset carries the campaign's key as its ``otherId``: a run whose create request reached the server
but whose answer was lost (so no persistent id was kept) is followed by one that finds that dataset in
the collection rather than creating a second. Nothing is published without ``release=True``, and a
publication counts once the server reports the version RELEASED (ilcampaign.publish.dataverse).

Files of at least ``Client.direct_from`` bytes go straight to the dataset's storage where it offers
direct upload, and are registered together in one request after the others; the rest are sent
through the native API one by one. Every file is sent with ``tabIngest: false`` (an HDF5 export is
no table to ingest) into the folder named after the campaign, as Dataverse stores that name.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ilcampaign.archive.atomic import atomic_write_json
from ilcampaign.publish.dataverse import (
    MEDIA_TYPES,
    Client,
    ConnectionLost,
    DataverseError,
    DryRun,
    InsecureURL,
    check_url,
    checksums,
    directory_label,
)
from ilcampaign.publish.metadata import CAMPAIGN_ID_AGENCY, MetadataError, dataset_json, digest

ALGORITHMS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}


class PublishError(Exception):
    """A deposit that cannot go on; ``exit_code`` 2 for bad input, 1 for a server or network failure."""

    def __init__(self, message: str, exit_code: int = 1):
        self.exit_code = exit_code
        super().__init__(message)


@dataclass
class Deposit:
    """What a publish did."""

    persistent_id: str | None
    files: list[Path]
    uploaded: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # files of an earlier export taken out of the draft
    created: bool = False
    released: bool = False
    version: str | None = None  # the latest version after the run: "DRAFT" or "2.0"
    dry_run: Path | None = None  # the file the requests were written to


def publish(target: str | os.PathLike[str], url: str, collection: str, token: str | None, *, release: bool = False,
            dry_run: bool = False, state_file: str | os.PathLike[str] | None = None,
            report_files: dict[str, Path] | None = None, timeout: float = 300.0,
            lock_timeout: float = 600.0) -> Deposit:
    """Export the campaign at ``target`` (work directory or archive folder) and deposit it in
    ``collection`` at the Dataverse ``url``; ``release``: publish the draft as a new major version;
    ``dry_run``: write the requests to ``<workdir>/publish/dry-run.json`` and send nothing;
    ``lock_timeout``: how long to wait for a locked dataset (seconds).
    PublishError (exit_code 2: bad input, 1: the server or network failed)."""
    workdir, archive = _locate(Path(target))
    try:
        url = check_url(url)
    except InsecureURL as exc:
        raise PublishError(str(exc), 2) from None
    if token is None and not dry_run:
        raise PublishError("no API token (set DATAVERSE_API_TOKEN or pass --token-file)", 2)
    manifest = archive.manifest()
    if manifest is None:
        raise PublishError(f"{archive.root}: no campaign.json (written by `campaign run`); nothing describes the data", 2)
    records = [archive.record(key) for key in sorted(archive.index()["steps"])]
    try:
        dataset_json(manifest)  # complain about missing metadata before exporting anything
    except MetadataError as exc:
        raise PublishError(str(exc), 2) from None
    folder = workdir / "publish"
    folder.mkdir(parents=True, exist_ok=True)
    state_path = Path(state_file) if state_file is not None else folder / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    files, descriptions = _export(archive, folder / f"{manifest['name']}.h5", state, report_files)
    atomic_write_json(state_path, state)  # the export's source, so that a rerun (or the run after a dry run) reuses it
    client: Client = DryRun(url, token) if dry_run else Client(url, token, timeout=timeout, lock_timeout=lock_timeout)
    deposit = Deposit(None, files)
    try:
        _deposit(client, deposit, collection, manifest, records, descriptions, state, state_path, release)
    except DataverseError as exc:
        raise PublishError(str(exc), 1) from None
    if dry_run:
        deposit.dry_run = folder / "dry-run.json"
        note = ("the requests a deposit sends to a server whose collection offers the citation block only, "
                "holds no dataset yet and offers no direct upload; X-Dataverse-key redacted; nothing was sent")
        atomic_write_json(deposit.dry_run, {"note": note, "requests": client.requests})
    return deposit


def _deposit(client: Client, deposit: Deposit, collection: str, manifest: dict[str, Any], records: list[dict],
             descriptions: dict[str, str], state: dict[str, Any], state_path: Path, release: bool) -> None:
    dry = isinstance(client, DryRun)
    body = dataset_json(manifest, records=records, blocks=client.blocks(collection))
    entry, latest = _dataset(client, deposit, collection, manifest["key"], body, state, state_path)
    pid = deposit.persistent_id
    directory = directory_label(manifest["name"])  # what the server makes of it: a trailing "." or "-" goes
    remote = {f["label"]: f for f in client.files(pid) if directory_label(f.get("directoryLabel") or "") == directory}
    plan = []
    for path in deposit.files:
        known = remote.get(path.name)
        if known is None:
            plan.append((path, None))
            continue
        kind, value = _remote_checksum(known["dataFile"])
        if checksums(path, (ALGORITHMS[kind],))[ALGORITHMS[kind]] == value:
            deposit.unchanged.append(path.name)
        else:
            plan.append((path, known["dataFile"]["id"]))
    if entry.get("metadata") != digest(body):
        client.update_metadata(pid, body["datasetVersion"])  # a released version gets a new draft
        entry["metadata"] = digest(body)
        latest = {"versionState": "DRAFT"}
        _save(state_path, state, dry)
    for name in sorted(set(remote) - {path.name for path in deposit.files}):  # e.g. a trajectory no longer split off
        client.delete_file(pid, remote[name]["dataFile"]["id"])
        deposit.deleted.append(name)
        latest = {"versionState": "DRAFT"}
    if plan:
        _upload(client, deposit, pid, plan, descriptions, directory, set(entry.get("released_files", [])))
        latest = {"versionState": "DRAFT"}
    if release and latest.get("versionState") == "DRAFT":
        latest = client.publish(pid)  # returns once the server reports the version released
        deposit.released = True
        entry["released_files"] = sorted(f["dataFile"]["id"] for f in client.files(pid))
        _save(state_path, state, dry)
    deposit.version = _version(latest)


def _upload(client: Client, deposit: Deposit, pid: str, plan: list[tuple[Path, int | None]],
            descriptions: dict[str, str], directory: str | None, released_ids: set[int]) -> None:
    """Send the planned files (file id None: new; else the id of the file it replaces), each checked
    against the checksum the server reports; a lost connection names what was and was not sent."""
    done: list[str] = []
    pending: list[tuple[Path, int | None, dict[str, Any]]] = []  # uploaded directly, to register together
    direct = True  # until the dataset's store turns out to offer no direct upload

    def arrived(path: Path, file_id: int | None, answer: dict[str, Any]) -> None:
        """Check the file the server stored against ``path``'s checksum and count it as sent."""
        kind, value = _remote_checksum(answer["dataFile"])
        if checksums(path, (ALGORITHMS[kind],))[ALGORITHMS[kind]] != value:
            raise DataverseError(f"{path.name} arrived damaged ({kind} {value} on the server); run the same "
                                 "command again to replace it")
        done.append(path.name)
        (deposit.uploaded if file_id is None else deposit.replaced).append(path.name)

    try:
        for path, file_id in plan:
            json_data = {"description": descriptions[path.name], "directoryLabel": directory, "restrict": False,
                         "tabIngest": False}
            ticket = client.upload_urls(pid, path.stat().st_size) if direct and _large(client, path) else None
            direct = direct and (ticket is not None or not _large(client, path))
            if ticket is not None:
                client.upload_direct(ticket, path)
                json_data.update(storageIdentifier=ticket.storage_identifier, fileName=path.name,
                                 mimeType=MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
                                 checksum={"@type": "SHA-256", "@value": checksums(path, ("sha256",))["sha256"]})
                if file_id not in released_ids:  # registered below with the other direct uploads
                    if file_id is not None:
                        client.delete_file(pid, file_id)
                    pending.append((path, file_id, json_data))
                    continue
                answer = client.replace_file(pid, file_id, None, {**json_data, "forceReplace": True})
            elif file_id is None:
                answer = client.add_file(pid, path, json_data)
            elif file_id in released_ids:  # a new version of a published file keeps its lineage
                answer = client.replace_file(pid, file_id, path, {**json_data, "forceReplace": True})
            else:  # Dataverse replaces published files only: a draft's own file is swapped
                client.delete_file(pid, file_id)
                answer = client.add_file(pid, path, json_data)
            arrived(path, file_id, answer)
        if pending:
            for (path, file_id, _), answer in zip(pending, client.add_files(pid, [item[2] for item in pending])):
                arrived(path, file_id, answer)
    except ConnectionLost as exc:
        missing = [p.name for p, _ in plan if p.name not in done]
        raise DataverseError(f"{exc}; uploaded: {', '.join(done) or 'none'}; not uploaded: {', '.join(missing)}; "
                             "run the same command again to resume") from None


def _large(client: Client, path: Path) -> bool:
    return path.stat().st_size >= client.direct_from


def _dataset(client: Client, deposit: Deposit, collection: str, key: str, body: dict[str, Any],
             state: dict[str, Any], state_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state entry of the campaign's dataset in ``collection`` and the dataset's latest version: the
    dataset the state names, else the one of the collection whose ``otherId`` is the campaign's ``key``
    (created by a run that lost the server's answer), else a new draft."""
    slot = f"{client.url} {collection}"
    entry = state.setdefault("datasets", {}).get(slot)
    if entry is not None:
        deposit.persistent_id = entry["persistentId"]
        return entry, _latest(client, entry["persistentId"], state_path) or {}
    found = client.find_dataset(collection, CAMPAIGN_ID_AGENCY, key)
    if found is None:
        try:
            pid = client.create_dataset(collection, body)
        except ConnectionLost as exc:
            raise DataverseError(f"{exc}; run the same command again: a dataset the server created meanwhile is "
                                 "found by the campaign's key and used") from None
        deposit.created, metadata, latest = True, digest(body), {"versionState": "DRAFT"}
    else:  # its metadata is sent again: the spec's citation may have changed since
        (pid, latest), metadata = found, None
    deposit.persistent_id = pid
    entry = state["datasets"][slot] = {"persistentId": pid, "metadata": metadata}
    _save(state_path, state, isinstance(client, DryRun))  # a failure from here on resumes in this dataset
    return entry, latest


def _latest(client: Client, pid: str, state_path: Path) -> dict[str, Any] | None:
    """The latest version of the dataset the state names (a 404 says how to start afresh)."""
    try:
        return client.latest_version(pid)
    except DataverseError as exc:
        if exc.status == 404:
            raise DataverseError(f"the dataset {pid} recorded in {state_path} is gone from {client.url} (404); "
                                 "remove its entry there to deposit a new dataset", 404) from None
        raise


def _save(state_path: Path, state: dict[str, Any], dry: bool) -> None:
    """Write the state (not after a dry run's made-up answers)."""
    if not dry:
        atomic_write_json(state_path, state)


def _version(latest: dict[str, Any]) -> str:
    if latest.get("versionState") != "RELEASED":
        return "DRAFT"
    return f"{latest.get('versionNumber', '?')}.{latest.get('versionMinorNumber', 0)}"


def _remote_checksum(data_file: dict[str, Any]) -> tuple[str, str]:
    """(type, value) of the checksum a server reports for a file (older servers: ``md5`` only)."""
    checksum = data_file.get("checksum") or {"type": "MD5", "value": data_file.get("md5")}
    if checksum["type"] not in ALGORITHMS:
        raise DataverseError(f"the server reports a checksum of unknown type {checksum['type']!r}")
    return checksum["type"], checksum["value"]


def _locate(target: Path):
    """(work directory, Archive) of a work directory or an archive folder."""
    from ilcampaign.archive.store import Archive

    target = target.resolve()
    if (target / "archive" / "index.json").exists():
        return target, Archive(target / "archive")
    if (target / "index.json").exists():
        return target.parent, Archive(target)
    raise PublishError(f"no archive in {target} (expected a work directory with archive/index.json)", 2)


def _export(archive, out: Path, state: dict[str, Any], report_files: dict[str, Path] | None):
    """The export's files (the main file first, then the split trajectories) and their descriptions;
    re-exported only when the archive (or the report) changed since the last export or a file is
    missing or changed."""
    import h5py

    from ilcampaign.archive.export import export, verify_export
    from ilcampaign.archive.store import ArchiveError

    source = hashlib.sha256()
    for path in (archive.index_path, archive.manifest_path):
        source.update(path.read_bytes() if path.exists() else b"")
    for name, path in sorted((report_files or {}).items()):
        source.update(name.encode() + b"\0" + checksums(Path(path), ("sha256",))["sha256"].encode())
    known = state.get("export", {})
    fresh = known.get("source") == source.hexdigest() and all(
        (out.parent / name).exists() and checksums(out.parent / name, ("sha256",))["sha256"] == sha
        for name, sha in known.get("files", {}).items()) and out.name in known.get("files", {})
    if not fresh:
        try:
            export(archive.root, out, report_files=report_files, split_trajectories=True)
        except ArchiveError as exc:
            raise PublishError(f"not exported: {exc}", 1) from None
        problems = verify_export(out)
        if problems:
            raise PublishError(f"the export {out} failed its check: {'; '.join(problems)}", 1)
    with h5py.File(out, "r") as f:
        split = json.loads(f["campaign/split.json"][()]) if "campaign/split.json" in f else {}
        names = {entry["file"]: f[where.rsplit("/", 1)[0]].attrs["name"] for where, entry in split.items()}
    name = out.stem
    descriptions = {out.name: f"The campaign '{name}' as one HDF5 file (ilcampaign export: every finished step's "
                              "record and outputs, the spec, provenance; check it with `campaign verify FILE.h5`). "
                              "Its trajectories are the files beside it, linked."}
    for file, step in sorted(names.items()):
        descriptions[file] = f"Trajectory (H5MD) of step {step}, linked from {out.name}."
    for stale in out.parent.glob(f"{name}.*.trajectory.h5"):
        if stale.name not in descriptions:
            stale.unlink()
    files = [out.parent / file for file in descriptions]
    if not fresh:
        state["export"] = {"source": source.hexdigest(),
                           "files": {path.name: checksums(path, ("sha256",))["sha256"] for path in files}}
    return files, descriptions
