"""A stand-in for a Dataverse server, for the publish tests: NOT a real Dataverse (which needs
Payara, PostgreSQL and Solr and cannot run here, so the client is tested against this instead), only
a model of the native API behaviours the ``campaign publish`` client relies on, written from the
Dataverse API guide and its JSON shapes as Dataverse's source (JsonPrinter, AbstractApiBean) prints them:

* ``X-Dataverse-key`` required on every request and checked (401 ``Bad API key`` otherwise);
* collections by alias, each offering metadata blocks (``GET /api/dataverses/{alias}/metadatablocks``)
  and listing its datasets (``GET /api/dataverses/{alias}/contents``: per dataset id, identifier,
  persistentUrl, protocol, authority, separator, publisher, storageIdentifier, ``type: dataset``);
  404 for an unknown alias;
* create a dataset in a collection (``POST /api/dataverses/{alias}/datasets``, 201 with id and
  persistentId), validating the citation block as Dataverse does: each field's typeClass and
  multiple as the block defines them, no unknown fields, the required fields title, author
  (authorName), datasetContact (datasetContactEmail), dsDescription (dsDescriptionValue) and
  subject present, controlled vocabularies (subject, authorIdentifierScheme, publicationIDType)
  respected, a license the installation knows (CC0 1.0, CC BY 4.0), only blocks the collection
  offers; a 400 with a message naming the field otherwise (otherId: agency and value);
* the dataset and its latest version (``GET /api/datasets/:persistentId/``), the latest version's
  files (``.../versions/:latest/files``) with the checksum of the configured type (MD5 by default,
  as Dataverse's default; SHA-256 etc. on request), its locks (``.../locks``: lockType, date, user,
  dataset, message each; ``[]`` when none);
* add a file (``.../add``, multipart ``file`` + ``jsonData`` with description and directoryLabel),
  replace a published file (``/api/files/{id}/replace``, a new file id; 400 for a file never
  published, as Dataverse), delete a file from the draft (``DELETE /api/files/{id}``), update the
  draft's metadata (``PUT .../versions/:draft``): each creates a new DRAFT version when the latest
  is released;
* publish (``.../actions/:publish?type=major``): the draft becomes version 1.0, then 2.0, ...;
  400 when there is no draft;
* a locked dataset refuses every change (403 ``Dataset cannot be edited due to dataset lock.``).

Failures on demand (``fail_next``): a status with a message for the next request matching a path
fragment; ``drop_upload``: the N-th upload from now has its connection closed after part of
its body was read, as a dropped network connection would; ``drop_answer``: the next request matching
a path fragment is carried out, then its connection closed before the answer (the server created the
dataset, the client never heard); ``lock_dataset``: a lock on a dataset until its locks have been read N
times; ``finalize_next_publish``: the next publication answers 202 ``WORKFLOW_IN_PROGRESS`` and
finishes in the background under a ``finalizePublication`` lock, as when Dataverse registers the files'
persistent ids. Not modelled: minor versions, file restriction, ingest (Dataverse lets some edits
through an Ingest lock; here every lock blocks), direct (S3) upload, duplicate-file checks,
permissions beyond the key, sub-collections in the contents.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SUBJECTS = {"Agricultural Sciences", "Arts and Humanities", "Astronomy and Astrophysics", "Business and Management",
            "Chemistry", "Computer and Information Science", "Earth and Environmental Sciences", "Engineering", "Law",
            "Mathematical Sciences", "Medicine, Health and Life Sciences", "Physics", "Social Sciences", "Other"}
VOCABULARIES = {"subject": SUBJECTS,
                "authorIdentifierScheme": {"ORCID", "ISNI", "LCNA", "VIAF", "GND", "DAI", "ResearcherID", "ScopusID"},
                "publicationIDType": {"ark", "arXiv", "bibcode", "cstr", "doi", "ean13", "eissn", "handle", "isbn",
                                      "issn", "istc", "lissn", "lsid", "pmid", "purl", "upc", "url", "urn"}}
#: the citation block's fields used here: typeName -> (typeClass, multiple, children or None)
CITATION = {
    "title": ("primitive", False, None),
    "author": ("compound", True, {"authorName", "authorAffiliation", "authorIdentifierScheme", "authorIdentifier"}),
    "datasetContact": ("compound", True, {"datasetContactName", "datasetContactAffiliation", "datasetContactEmail"}),
    "dsDescription": ("compound", True, {"dsDescriptionValue", "dsDescriptionDate"}),
    "subject": ("controlledVocabulary", True, None),
    "keyword": ("compound", True, {"keywordValue", "keywordVocabulary", "keywordVocabularyURI"}),
    "publication": ("compound", True, {"publicationCitation", "publicationIDType", "publicationIDNumber",
                                       "publicationURL"}),
    "grantNumber": ("compound", True, {"grantNumberAgency", "grantNumberValue"}),
    "otherId": ("compound", True, {"otherIdAgency", "otherIdValue"}),
}
REQUIRED = [("title", None, "Title"), ("author", "authorName", "Author Name"),
            ("datasetContact", "datasetContactEmail", "Point of Contact E-mail"),
            ("dsDescription", "dsDescriptionValue", "Description Text"), ("subject", None, "Subject")]
LICENSES = {"CC0 1.0", "CC BY 4.0"}
HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}
LOCKED = "Dataset cannot be edited due to dataset lock."  # Dataverse's 403 message for a change to a locked dataset


class Invalid(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


class Dataverse:
    """The server's state and its request handling; ``start()`` serves it on 127.0.0.1 (a free port)."""

    def __init__(self, token: str, collections: dict[str, list[str]] | None = None, checksum_type: str = "MD5"):
        self.token = token
        self.collections = collections or {"ilcampaign": ["citation"]}
        self.checksum_type = checksum_type
        self.datasets: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[str, str]] = []  # (method, path) of every request
        self.failures: list[tuple[str, int, str]] = []  # (path fragment, status, message)
        self.drop_at: int | None = None  # drop the connection of this upload (1: the next one)
        self.uploads_seen = 0
        self.dropped_answers: list[str] = []  # path fragments: carry out, then hang up
        self.finalize_polls: list[int | None] = []  # per coming publication: reads of its lock before it lifts
        self.lock = threading.Lock()
        self._ids = iter(range(100, 10**9))

    # on demand failures
    def fail_next(self, fragment: str, status: int, message: str = "") -> None:
        self.failures.append((fragment, status, message))

    def drop_upload(self, n: int) -> None:
        self.drop_at, self.uploads_seen = n, 0

    def drop_answer(self, fragment: str) -> None:
        self.dropped_answers.append(fragment)

    def lock_dataset(self, pid: str, lock_type: str, polls: int | None, then: Any = None) -> None:
        """Lock dataset ``pid`` until its locks have been read ``polls`` times (None: for good); ``then()``
        runs when the lock lifts."""
        entry = {"lockType": lock_type, "date": "2026-01-01T00:00:00Z", "user": "dataverseAdmin", "dataset": pid,
                 "message": f"{lock_type} in progress"}
        self.datasets[pid]["lock"] = {"json": entry, "polls": polls, "then": then}

    def finalize_next_publish(self, polls: int | None) -> None:
        self.finalize_polls.append(polls)

    # serving
    def start(self) -> str:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                state._handle(self)

            do_POST = do_PUT = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        with self.lock:
            self.log.append((handler.command, parts.path))
        length = int(handler.headers.get("Content-Length") or 0)
        if parts.path.endswith(("/add", "/replace")) and self.drop_at is not None:
            self.uploads_seen += 1
            if self.uploads_seen == self.drop_at:  # read part of the body, then hang up
                self.drop_at = None
                handler.rfile.read(length // 2)
                handler.connection.shutdown(socket.SHUT_RDWR)
                handler.close_connection = True
                return
        body = handler.rfile.read(length) if length else b""
        try:
            if handler.headers.get("X-Dataverse-key") != self.token:
                raise Invalid(401, "Bad API key")
            for i, (fragment, status, message) in enumerate(self.failures):
                if fragment in parts.path:
                    del self.failures[i]
                    raise Invalid(status, message)
            with self.lock:
                status, data = self._route(handler.command, parts.path, query, handler.headers, body)
            dropped = [fragment for fragment in self.dropped_answers if fragment in parts.path]
            if dropped:  # done, but the client never hears of it
                self.dropped_answers.remove(dropped[0])
                handler.connection.shutdown(socket.SHUT_RDWR)
                handler.close_connection = True
                return
            self._answer(handler, status, {"status": "WORKFLOW_IN_PROGRESS" if status == 202 else "OK", "data": data})
        except Invalid as exc:
            self._answer(handler, exc.status, {"status": "ERROR", "message": exc.message})

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    # the API
    def _route(self, method: str, path: str, query: dict[str, str], headers, body: bytes) -> tuple[int, Any]:
        segments = path.strip("/").split("/")
        if segments[:2] == ["api", "dataverses"] and len(segments) == 4:
            alias = segments[2]
            if alias not in self.collections:
                raise Invalid(404, f"Can't find dataverse with identifier='{alias}'")
            if method == "GET" and segments[3] == "metadatablocks":
                return 200, [{"name": name, "displayName": name.title()} for name in self.collections[alias]]
            if method == "GET" and segments[3] == "contents":
                return 200, [{**_summary(pid, dataset), "type": "dataset"} for pid, dataset in self.datasets.items()
                             if dataset["alias"] == alias]
            if method == "POST" and segments[3] == "datasets":
                version = _json(body).get("datasetVersion")
                if not isinstance(version, dict):
                    raise Invalid(400, "Error parsing Json: no datasetVersion")
                self._validate(version, alias)
                pid = f"doi:10.5072/FK2/{len(self.datasets) + 1:06d}"
                self.datasets[pid] = {"id": next(self._ids), "alias": alias, "versions": [self._version(version)]}
                return 201, {"id": self.datasets[pid]["id"], "persistentId": pid}
        if segments[:3] == ["api", "datasets", ":persistentId"]:
            pid = query.get("persistentId", "")
            if pid not in self.datasets:
                raise Invalid(404, f"Dataset with Persistent ID {pid} not found.")
            dataset, rest = self.datasets[pid], segments[3:]
            latest = dataset["versions"][-1]
            if method == "GET" and rest == []:
                return 200, {**_summary(pid, dataset), "latestVersion": _public(latest)}
            if method == "GET" and rest == ["versions", ":latest", "files"]:
                return 200, _public(latest)["files"]
            if method == "GET" and rest == ["locks"]:
                return 200, self._locks(dataset)
            if method != "GET" and "lock" in dataset:
                raise Invalid(403, LOCKED)
            if method == "PUT" and rest == ["versions", ":draft"]:
                version = _json(body)
                self._validate(version, dataset["alias"])
                draft = self._draft(dataset)
                draft.update(metadataBlocks=version["metadataBlocks"], license=version.get("license"))
                return 200, _public(draft)
            if method == "POST" and rest == ["add"]:
                content, json_data, filename = _multipart(headers, body)
                draft = self._draft(dataset)
                draft["files"].append(self._file(content, json_data, filename))
                return 200, {"files": [_public_file(draft["files"][-1])]}
            if method == "POST" and rest == ["actions", ":publish"]:
                if latest["versionState"] != "DRAFT":
                    raise Invalid(400, "Cannot publish: this dataset has no draft version")
                if query.get("type") != "major":
                    raise Invalid(400, "this stand-in publishes major versions only")
                if self.finalize_polls:  # finished in the background, under a lock
                    self.lock_dataset(pid, "finalizePublication", self.finalize_polls.pop(0), lambda: _release(dataset))
                    return 202, _summary(pid, dataset)
                _release(dataset)
                return 200, _summary(pid, dataset)
        if segments[:2] == ["api", "files"] and len(segments) in (3, 4) and segments[2].isdigit():
            file_id = int(segments[2])
            for dataset in self.datasets.values():
                if not any(f["dataFile"]["id"] == file_id for f in dataset["versions"][-1]["files"]):
                    continue
                if "lock" in dataset:
                    raise Invalid(403, LOCKED)
                if method == "DELETE" and len(segments) == 3:
                    draft = self._draft(dataset)
                    draft["files"] = [f for f in draft["files"] if f["dataFile"]["id"] != file_id]
                    return 200, {"message": f"file {file_id} deleted"}
                if method == "POST" and segments[3:] == ["replace"]:
                    if not any(f["dataFile"]["id"] == file_id for v in dataset["versions"]
                               if v["versionState"] == "RELEASED" for f in v["files"]):
                        raise Invalid(400, "You cannot replace an unpublished file. Please delete it instead of "
                                      "replacing it.")
                    content, json_data, filename = _multipart(headers, body)
                    draft = self._draft(dataset)
                    index = next(i for i, f in enumerate(draft["files"]) if f["dataFile"]["id"] == file_id)
                    draft["files"][index] = self._file(content, json_data, filename)
                    return 200, {"files": [_public_file(draft["files"][index])]}
            raise Invalid(404, f"File with ID {file_id} not found.")
        raise Invalid(404, f"API endpoint does not exist on this server: {method} {path}")

    @staticmethod
    def _locks(dataset: dict[str, Any]) -> list[dict[str, Any]]:
        """The dataset's locks as this read sees them; one read fewer before its lock lifts."""
        lock = dataset.get("lock")
        if lock is None:
            return []
        if lock["polls"] == 0:
            del dataset["lock"]
            if lock["then"] is not None:
                lock["then"]()
            return []
        if lock["polls"] is not None:
            lock["polls"] -= 1
        return [lock["json"]]

    def _draft(self, dataset: dict[str, Any]) -> dict[str, Any]:
        """The dataset's draft, made from the latest released version where there is none."""
        latest = dataset["versions"][-1]
        if latest["versionState"] == "DRAFT":
            return latest
        draft = copy.deepcopy(latest)
        draft.update(versionState="DRAFT", versionNumber=None, versionMinorNumber=None)
        dataset["versions"].append(draft)
        return draft

    def _version(self, version: dict[str, Any]) -> dict[str, Any]:
        return {"versionState": "DRAFT", "versionNumber": None, "versionMinorNumber": None,
                "metadataBlocks": version["metadataBlocks"], "license": version.get("license"), "files": []}

    def _file(self, content: bytes, json_data: dict[str, Any], filename: str) -> dict[str, Any]:
        value = hashlib.new(HASHES[self.checksum_type], content).hexdigest()
        data_file = {"id": next(self._ids), "filename": filename, "filesize": len(content),
                     "checksum": {"type": self.checksum_type, "value": value}}
        if self.checksum_type == "MD5":
            data_file["md5"] = value
        return {"label": filename, "directoryLabel": json_data.get("directoryLabel"),
                "description": json_data.get("description", ""), "dataFile": data_file, "content": content}

    def _validate(self, version: dict[str, Any], alias: str) -> None:
        license_ = version.get("license")
        if license_ is not None and license_.get("name") not in LICENSES:
            raise Invalid(400, f"Invalid license: {license_.get('name')}")
        blocks = version.get("metadataBlocks")
        if not isinstance(blocks, dict) or "citation" not in blocks:
            raise Invalid(400, "Validation Failed: no citation metadata block")
        for name in blocks:
            if name not in self.collections[alias]:
                raise Invalid(400, f"metadata block {name} is not enabled for collection {alias}")
        fields = {}
        for entry in blocks["citation"].get("fields", []):
            name = entry.get("typeName")
            if name not in CITATION:
                raise Invalid(400, f"Invalid field: {name} is not a field of the citation block")
            type_class, multiple, children = CITATION[name]
            if entry.get("typeClass") != type_class or entry.get("multiple") is not multiple:
                raise Invalid(400, f"Invalid field: {name} must have typeClass {type_class} and multiple {multiple}")
            values = entry["value"] if multiple else [entry["value"]]
            if not isinstance(values, list):
                raise Invalid(400, f"Invalid field: {name} must hold a list of values")
            for value in values:
                if children is None:
                    _check_vocabulary(name, value)
                    continue
                for child, child_entry in value.items():
                    if child not in children or child_entry.get("typeName") != child:
                        raise Invalid(400, f"Invalid field: {child} is not a child of {name}")
                    _check_vocabulary(child, child_entry.get("value"))
            fields[name] = values
        for name, child, label in REQUIRED:
            values = fields.get(name) or []
            if not values or any((v.get(child, {}).get("value") if child else v) in (None, "") for v in values):
                raise Invalid(400, f"Validation Failed: {label} is required. (field {child or name})")
        for name, block in blocks.items():
            if name != "citation" and any(not f.get("typeName", "").startswith(name) for f in block.get("fields", [])):
                raise Invalid(400, f"Invalid field in block {name}")


def _release(dataset: dict[str, Any]) -> None:
    """The draft becomes the next major version."""
    released = [v for v in dataset["versions"] if v["versionState"] == "RELEASED"]
    dataset["versions"][-1].update(versionState="RELEASED", versionNumber=len(released) + 1, versionMinorNumber=0)


def _summary(pid: str, dataset: dict[str, Any]) -> dict[str, Any]:
    """A dataset as Dataverse's JSON of a dataset (not of a version) gives it."""
    protocol, rest = pid.split(":", 1)
    authority, identifier = rest.split("/", 1)
    return {"id": dataset["id"], "identifier": identifier, "persistentUrl": f"https://doi.org/{rest}",
            "protocol": protocol, "authority": authority, "separator": "/", "publisher": "Stand-in Dataverse",
            "storageIdentifier": f"file://{rest}"}


def _check_vocabulary(name: str, value: Any) -> None:
    if name in VOCABULARIES and value not in VOCABULARIES[name]:
        raise Invalid(400, f"Validation Failed: {value!r} is not a valid entry for field {name}")


def _json(body: bytes) -> dict[str, Any]:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise Invalid(400, f"Error parsing Json: {exc}") from None


def _multipart(headers, body: bytes) -> tuple[bytes, dict[str, Any], str]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body)
    content, json_data, filename = None, {}, None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name == "file":
            content, filename = part.get_payload(decode=True), part.get_filename()
        elif name == "jsonData":
            json_data = json.loads(part.get_content())
    if content is None:
        raise Invalid(400, "You must upload a file.")
    return content, json_data, filename


def _public_file(file: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in file.items() if key != "content"}


def _public(version: dict[str, Any]) -> dict[str, Any]:
    return {**version, "files": [_public_file(f) for f in version["files"]]}
