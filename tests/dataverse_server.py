"""A stand-in for a Dataverse server, for the publish tests: NOT a real Dataverse (which needs
Payara, PostgreSQL and Solr and cannot run here, so the client is tested against this instead), only
a model of the native API behaviours the ``campaign publish`` client relies on. Each is written from
IQSS/dataverse's source (paths under src/main/java/edu/harvard/iq/dataverse/, read at commit
b485249 of July 2026), as cited; where the source was not read, the API guide's JSON shapes:

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
* the dataset and its latest version (``GET /api/datasets/:persistentId/``): ``latestVersion`` is
  null where the token may see no version (api/Datasets.getDataset adds
  ``GetLatestAccessibleDatasetVersionCommand``'s result or null; ``hide_versions``: another user's
  draft in the collection);
* the latest version's files (``.../versions/:latest/files``) with the checksum of the configured
  type (MD5 by default, as Dataverse's default; SHA-256 etc. on request), and the dataset's locks
  (``.../locks``: lockType, date, user, dataset, message each; ``[]`` when none; api/Datasets.
  getLocksForDataset);
* add a file (``.../add``, multipart ``file`` + ``jsonData`` with description, directoryLabel,
  tabIngest), replace a published file (``/api/files/{id}/replace``, a new file id; 400 for a file
  never published), delete a file from the draft (``DELETE /api/files/{id}``), update the draft's
  metadata (``PUT .../versions/:draft``): each creates a new DRAFT version when the latest is
  released. A ``directoryLabel`` is stored as FileMetadata.setDirectoryLabel stores it
  (util/StringUtil.sanitizeFileDirectory: runs of ``/`` and ``\\`` become one ``/``; leading and
  trailing ``/``, ``-``, ``.`` and spaces are stripped);
* publish (``.../actions/:publish?type=major``) answers **200** with the dataset and finalises in the
  background under a ``finalizePublication`` lock: PublishDatasetCommand.execute ("As of v5.0,
  publishing a dataset is always done asynchronously, with the dataset locked") returns
  Status.Inprogress, and api/Datasets.publishDataset answers ``accepted`` (202) only for
  ``res.isWorkflow()``, a pre-publication workflow (``finalize_next_publish(workflow=True)``). The
  draft is released when the lock lifts (FinalizeDatasetPublicationCommand); if finalising fails
  (``released=False``: PID registration, FinalizeDatasetPublicationCommand's catch) the lock goes
  and the version stays DRAFT. Publishing a dataset whose latest version is released answers 403
  ("... is already released. Only draft versions can be released.": verifyCommandArguments'
  IllegalCommandException, which AbstractApiBean.execCommand maps to 403);
* a locked dataset refuses each change as the real one does (IQSS/dataverse#8700):
  add and replace answer **400** "Failed to add file to dataset." (AddReplaceFileHelper.
  step_070_run_update_dataset_command catches UpdateDatasetVersionCommand's CommandException as
  ``add.add_file_error``; its default status is BAD_REQUEST); delete answers **400** "Delete failed
  for file ID {id} (CommandException): Dataset cannot be edited due to dataset lock."
  (api/Files.deleteFileInDataset); a metadata update answers **403** "Dataset cannot be edited due to
  dataset lock." (PermissionServiceBean.checkEditDatasetLock's IllegalCommandException through
  execCommand); publish answers **403** "This dataset is locked. Reason: {reasons}. Please try
  publishing later." (PublishDatasetCommand.verifyCommandArguments); ``/addFiles`` answers **500**
  "CommandException updating DatasetVersion from addFiles job: Dataset cannot be edited due to
  dataset lock." (AddReplaceFileHelper.addFiles: the lock surfaces only in its final
  UpdateDatasetVersionCommand). Every lock blocks here, as checkEditDatasetLock lets none through
  for a non-curator (InReview excepted, not modelled);
* direct upload (developers/s3-direct-upload-api.rst; api/Datasets.getMPUploadUrls,
  completeMPUpload, abortMPUpload, addFilesToDataset; dataaccess/S3AccessIO.
  generateTemporaryS3UploadUrls): ``GET .../uploadurls?size=`` answers 404 "Direct upload not
  supported for files in this dataset: {id}" unless ``direct_part_size`` is set; then a file of at
  most that many bytes gets one pre-signed ``url``, a larger one ``urls`` (one per part, numbered
  from 1) with ``abort`` and ``complete`` paths (``/api/datasets/mpupload?globalid=...&uploadid=
  ...&storageidentifier=...``), each with ``partSize`` and ``storageIdentifier``. The storage is a
  local S3-like target under ``/s3/`` on this server: a single PUT must carry ``x-amz-tagging:
  dv-state=temp`` (presigned with that tag unless tagging is disabled; 403 SignatureDoesNotMatch
  otherwise), each PUT answers an ``ETag`` (the part's MD5, quoted, as S3 does); ``PUT mpupload``
  with ``{"1": etag, ...}`` completes (200 "Multipart Upload completed"), ``DELETE`` aborts (204).
  ``POST .../addFiles`` (multipart ``jsonData``: a list with storageIdentifier, fileName,
  mimeType, checksum ``{"@type", "@value"}``) registers them without checking the checksum, as the
  guide says Dataverse does, and answers 200 ``{"Files": [{storageIdentifier, successMessage,
  fileDetails} or {..., errorMessage}], "Result": {...}}`` even where single files failed;
  ``/api/files/{id}/replace`` takes a ``storageIdentifier`` in place of the file too.

Failures on demand (``fail_next``): a status with a message for the next request matching a path
fragment; ``drop_upload``: the N-th upload from now has its connection closed after part of
its body was read, as a dropped network connection would; ``drop_answer``: the next request matching
a path fragment is carried out, then its connection closed before the answer (the server created the
dataset, the client never heard); ``lock_dataset``: a lock on a dataset until its locks have been read
N times; ``lock_on_arrival``: the next request matching a fragment finds its dataset just locked (a
lock taken after the client looked). Not modelled: minor versions, file restriction, tabular
ingest, duplicate-file checks, permissions beyond the key, sub-collections in the contents, S3's
signatures and expiry, quotas and size limits.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import hashlib
import json
import re
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

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
LOCKED = "Dataset cannot be edited due to dataset lock."  # dataset.message.locked.editNotAllowed
ADD_FAILED = "Failed to add file to dataset."  # file.addreplace.error.add.add_file_error


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
        self.publish_lock_polls = 2  # reads of /locks a publication's finalizePublication lock survives
        self.finalizing: list[dict[str, Any]] = []  # per coming publication: how it finalises
        self.arrivals: list[tuple[str, str, str, int]] = []  # (pid, path fragment, lock type, polls)
        self.direct_part_size: int | None = None  # None: the store offers no direct upload
        self.store: dict[str, bytes] = {}  # storage identifier -> bytes uploaded directly
        self.multipart: dict[str, dict[str, Any]] = {}  # upload id -> storage identifier, parts
        self.store_log: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers) of storage requests
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

    def lock_on_arrival(self, pid: str, fragment: str, lock_type: str, polls: int) -> None:
        """The next request whose path holds ``fragment`` finds dataset ``pid`` locked for ``polls`` reads."""
        self.arrivals.append((pid, fragment, lock_type, polls))

    def finalize_next_publish(self, polls: int | None, *, released: bool = True, workflow: bool = False) -> None:
        """The next publication holds its lock for ``polls`` reads (None: for good), then releases the
        draft or (``released=False``) fails to; ``workflow``: a pre-publication workflow runs (202)."""
        self.finalizing.append({"polls": polls, "released": released, "workflow": workflow})

    def hide_versions(self, pid: str) -> None:
        """The token may see no version of ``pid`` (another user's draft): its latestVersion is null."""
        self.datasets[pid]["hidden"] = True

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
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        if parts.path.startswith("/s3/"):
            self._storage(handler, parts.path, query, handler.rfile.read(length) if length else b"")
            return
        with self.lock:
            self.log.append((handler.command, parts.path))
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
                for arrival in [a for a in self.arrivals if a[1] in parts.path][:1]:
                    self.arrivals.remove(arrival)
                    self.lock_dataset(arrival[0], arrival[2], arrival[3])
                status, data = self._route(handler.command, parts.path, query, handler.headers, body)
            dropped = [fragment for fragment in self.dropped_answers if fragment in parts.path]
            if dropped:  # done, but the client never hears of it
                self.dropped_answers.remove(dropped[0])
                handler.connection.shutdown(socket.SHUT_RDWR)
                handler.close_connection = True
                return
            if status == 204:
                handler.send_response(204)
                handler.end_headers()
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

    def _storage(self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, str], body: bytes) -> None:
        """The S3-like target of direct uploads: PUT an object (tagged dv-state=temp) or a part of a
        multipart upload; each answer carries the bytes' MD5 as a quoted ETag."""
        with self.lock:
            self.store_log.append((handler.command, path, dict(handler.headers)))
            key = path.removeprefix("/s3/")
            if handler.command != "PUT" or "X-Amz-Signature" not in query:
                status = 403
            elif "uploadId" in query:
                upload = self.multipart.get(query["uploadId"])
                status = 404 if upload is None else 200
                if upload is not None:
                    upload["parts"][int(query["partNumber"])] = body
            elif handler.headers.get("x-amz-tagging") != "dv-state=temp":
                status = 403  # the URL was presigned with the tag: without it the signature does not match
            else:
                status = 200
                self.store[f"s3://stand-in-bucket:{key}"] = body
        handler.send_response(status)
        if status == 200:
            handler.send_header("ETag", f'"{hashlib.md5(body).hexdigest()}"')
        handler.send_header("Content-Length", "0")
        handler.end_headers()

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
        if segments == ["api", "datasets", "mpupload"]:
            return self._multipart_upload(method, query, body)
        if segments[:3] == ["api", "datasets", ":persistentId"]:
            pid = query.get("persistentId", "")
            if pid not in self.datasets:
                raise Invalid(404, f"Dataset with Persistent ID {pid} not found.")
            dataset, rest = self.datasets[pid], segments[3:]
            latest = dataset["versions"][-1]
            if method == "GET" and rest == []:
                return 200, {**_summary(pid, dataset), "latestVersion": None if dataset.get("hidden") else _public(latest)}
            if method == "GET" and rest == ["versions", ":latest", "files"]:
                return 200, _public(latest)["files"]
            if method == "GET" and rest == ["locks"]:
                return 200, self._locks(dataset)
            if method == "GET" and rest == ["uploadurls"]:
                return 200, self._upload_urls(pid, dataset, int(query.get("size", 0)))
            if method == "PUT" and rest == ["versions", ":draft"]:
                if "lock" in dataset:
                    raise Invalid(403, LOCKED)
                version = _json(body)
                self._validate(version, dataset["alias"])
                draft = self._draft(dataset)
                draft.update(metadataBlocks=version["metadataBlocks"], license=version.get("license"))
                return 200, _public(draft)
            if method == "POST" and rest == ["add"]:
                if "lock" in dataset:
                    raise Invalid(400, ADD_FAILED)
                content, json_data, filename = self._upload(headers, body)
                draft = self._draft(dataset)
                draft["files"].append(self._file(content, json_data, filename))
                return 200, {"files": [_public_file(draft["files"][-1])]}
            if method == "POST" and rest == ["addFiles"]:
                return 200, self._add_files(dataset, headers, body)
            if method == "POST" and rest == ["actions", ":publish"]:
                return self._publish(pid, dataset, query)
        if segments[:2] == ["api", "files"] and len(segments) in (3, 4) and segments[2].isdigit():
            file_id = int(segments[2])
            for dataset in self.datasets.values():
                if not any(f["dataFile"]["id"] == file_id for f in dataset["versions"][-1]["files"]):
                    continue
                if method == "DELETE" and len(segments) == 3:
                    if "lock" in dataset:
                        raise Invalid(400, f"Delete failed for file ID {file_id} (CommandException): {LOCKED}")
                    draft = self._draft(dataset)
                    draft["files"] = [f for f in draft["files"] if f["dataFile"]["id"] != file_id]
                    return 200, True  # api/Files.deleteFileInDataset: ok(deletePhysicalFile)
                if method == "POST" and segments[3:] == ["replace"]:
                    if not any(f["dataFile"]["id"] == file_id for v in dataset["versions"]
                               if v["versionState"] == "RELEASED" for f in v["files"]):
                        raise Invalid(400, "You cannot replace an unpublished file. Please delete it instead of "
                                      "replacing it.")
                    if "lock" in dataset:
                        raise Invalid(400, ADD_FAILED)
                    content, json_data, filename = self._upload(headers, body)
                    draft = self._draft(dataset)
                    index = next(i for i, f in enumerate(draft["files"]) if f["dataFile"]["id"] == file_id)
                    draft["files"][index] = self._file(content, json_data, filename)
                    return 200, {"files": [_public_file(draft["files"][index])]}
            raise Invalid(404, f"File with ID {file_id} not found.")
        raise Invalid(404, f"API endpoint does not exist on this server: {method} {path}")

    def _publish(self, pid: str, dataset: dict[str, Any], query: dict[str, str]) -> tuple[int, Any]:
        """Start a publication: 200 (202 for a workflow) at once, released when its lock lifts."""
        if query.get("type") != "major":
            raise Invalid(400, "this stand-in publishes major versions only")
        if "lock" in dataset:
            raise Invalid(403, f"This dataset is locked. Reason: {dataset['lock']['json']['lockType']}. Please try "
                          "publishing later.")
        if dataset["versions"][-1]["versionState"] != "DRAFT":
            raise Invalid(403, f"Latest version of dataset {pid.rsplit('/', 1)[-1]} is already released. Only draft "
                          "versions can be released.")
        how = self.finalizing.pop(0) if self.finalizing else {"polls": self.publish_lock_polls, "released": True,
                                                              "workflow": False}
        self.lock_dataset(pid, "Workflow" if how["workflow"] else "finalizePublication", how["polls"],
                          (lambda: _release(dataset)) if how["released"] else None)
        return (202 if how["workflow"] else 200), _summary(pid, dataset)

    def _upload_urls(self, pid: str, dataset: dict[str, Any], size: int) -> dict[str, Any]:
        """Pre-signed URL(s) on the S3-like target for ``size`` bytes (404 without direct upload)."""
        if self.direct_part_size is None:
            raise Invalid(404, f"Direct upload not supported for files in this dataset: {dataset['id']}")
        key = f"{pid.rsplit('/', 1)[-1]}/{uuid.uuid4().hex[:12]}"
        storage_identifier = f"s3://stand-in-bucket:{key}"
        answer = {"partSize": self.direct_part_size, "storageIdentifier": storage_identifier}
        if size <= self.direct_part_size:
            return {**answer, "url": f"{self.url}/s3/{key}?X-Amz-Signature=stand-in"}
        upload = uuid.uuid4().hex
        self.multipart[upload] = {"storage_identifier": storage_identifier, "parts": {}}
        n_parts = -(-size // self.direct_part_size)
        where = urlencode({"globalid": pid, "uploadid": upload, "storageidentifier": storage_identifier})
        return {**answer, "urls": {str(n): f"{self.url}/s3/{key}?partNumber={n}&uploadId={upload}&X-Amz-Signature=s"
                                   for n in range(1, n_parts + 1)},
                "abort": f"/api/datasets/mpupload?{where}", "complete": f"/api/datasets/mpupload?{where}"}

    def _multipart_upload(self, method: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        """Complete (PUT, the parts' ETags by number) or abort (DELETE) a multipart upload."""
        upload = self.multipart.pop(query.get("uploadid", ""), None)
        if upload is None or upload["storage_identifier"] != query.get("storageidentifier"):
            raise Invalid(500, "Could not complete multipart upload" if method == "PUT" else
                          "Could not abort multipart upload")
        if method == "DELETE":
            return 204, None
        etags, parts = _json(body), upload["parts"]
        if sorted(map(int, etags)) != sorted(parts) or any(
                etags[str(n)] != f'"{hashlib.md5(parts[n]).hexdigest()}"' for n in parts):
            raise Invalid(500, "Could not complete multipart upload")
        self.store[upload["storage_identifier"]] = b"".join(parts[n] for n in sorted(parts))
        return 200, {"message": "Multipart Upload completed"}

    def _add_files(self, dataset: dict[str, Any], headers, body: bytes) -> dict[str, Any]:
        """Register directly uploaded files; per file a success or an error, the answer 200 regardless."""
        if "lock" in dataset:
            raise Invalid(500, f"CommandException updating DatasetVersion from addFiles job: {LOCKED}")
        entries = _multipart(headers, body)[1]
        draft, files = self._draft(dataset), []
        for entry in entries:
            stored = self.store.get(entry.get("storageIdentifier"))
            if stored is None or not all(entry.get(key) for key in ("fileName", "mimeType")):
                files.append({"errorMessage": "You must provide a storageidentifier, filename, and mimetype.",
                              "fileDetails": entry})
                continue
            draft["files"].append(self._file(stored, entry, entry["fileName"]))
            files.append({"storageIdentifier": entry["storageIdentifier"], "successMessage": "Added successfully to "
                          "the dataset", "fileDetails": _public_file(draft["files"][-1])})
        added = sum("successMessage" in item for item in files)
        return {"Files": files, "Result": {"Total number of files": len(entries),
                                           "Number of files successfully added": added}}

    def _upload(self, headers, body: bytes) -> tuple[bytes, dict[str, Any], str]:
        """A multipart upload's file, jsonData and file name; the file may be one uploaded directly and
        named by jsonData's storageIdentifier (and fileName)."""
        content, json_data, filename = _multipart(headers, body)
        if content is None and json_data.get("storageIdentifier") in self.store:
            content, filename = self.store[json_data["storageIdentifier"]], json_data.get("fileName")
        if content is None:
            raise Invalid(400, "You must upload a file.")
        return content, json_data, filename

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
        """A stored file: the checksum of the configured type, or a direct upload's own (not checked)."""
        given = json_data.get("checksum")
        if given is not None:
            checksum = {"type": given["@type"], "value": given["@value"]}
        else:
            checksum = {"type": self.checksum_type,
                        "value": hashlib.new(HASHES[self.checksum_type], content).hexdigest()}
        data_file = {"id": next(self._ids), "filename": filename, "filesize": len(content), "checksum": checksum}
        if checksum["type"] == "MD5":
            data_file["md5"] = checksum["value"]
        return {"label": filename, "directoryLabel": _sanitised(json_data.get("directoryLabel")),
                "description": json_data.get("description", ""), "dataFile": data_file, "content": content,
                "jsonData": json_data}

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


def _sanitised(label: str | None) -> str | None:
    """A directoryLabel as Dataverse stores it (util/StringUtil.sanitizeFileDirectory)."""
    if label is None:
        return None
    value = re.sub(r"[\\/][\\/]*", "/", label)  # Java: replaceAll("[\\\\/][\\\\/]*", "/")
    while value and value[0] in "/-. ":
        value = value[1:]
    while value and value[-1] in "/-. ":
        value = value[:-1]
    return value or None


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


def _multipart(headers, body: bytes) -> tuple[bytes | None, Any, str | None]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body)
    content, json_data, filename = None, {}, None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name == "file":
            content, filename = part.get_payload(decode=True), part.get_filename()
        elif name == "jsonData":
            json_data = json.loads(part.get_content())
    return content, json_data, filename


def _public_file(file: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in file.items() if key not in ("content", "jsonData")}


def _public(version: dict[str, Any]) -> dict[str, Any]:
    return {**version, "files": [_public_file(f) for f in version["files"]]}
