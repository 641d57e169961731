"""A small client for the Dataverse native API: the few requests a deposit needs, as the server
behaves (checked against IQSS/dataverse's Datasets.java, Files.java, AddReplaceFileHelper.java,
PublishDatasetCommand.java and S3AccessIO.java; tests/dataverse_server.py models each behaviour).

Written on the standard library (``http.client``) rather than on pyDataverse 0.3.5 or dvuploader
0.3.3 (the newest releases): dvuploader requires typer < 0.16 (and so click < 8.2), rich < 14 and
tenacity < 9, which would downgrade typer 0.29, click 8.5 and rich 15 that ``campaign`` runs on,
and adds httpx, aiofiles and nest-asyncio; pyDataverse (httpx, jsonschema) wraps single requests
and neither waits for locks nor uploads directly. What dvuploader does is done here too: the
dataset's locks are checked before every write, direct upload is used where the store offers it
(single or multipart, registered with one ``/addFiles``), ``tabIngest`` is sent as false. Unlike
dvuploader, the API token never goes to the storage's pre-signed URLs.

Requests (``X-Dataverse-key`` carries the API token; it is never put in a URL, message or file):

* ``GET  /api/dataverses/{alias}/metadatablocks``                 the collection's metadata blocks
* ``GET  /api/dataverses/{alias}/contents``                       its datasets (drafts too, for their
  owner's token): their latest versions' ``otherId`` finds the dataset of a create request whose
  answer was lost (the Search API would take one request, but its index is filled asynchronously
  and may miss a dataset created a moment ago); a dataset whose latest version the token may not
  see has ``latestVersion: null`` and is passed over
* ``POST /api/dataverses/{alias}/datasets``                       create a dataset (a draft)
* ``GET  /api/datasets/:persistentId/?persistentId=PID``          the dataset and its latest version
* ``GET  /api/datasets/:persistentId/locks?persistentId=PID``     its locks (empty: none)
* ``GET  /api/datasets/:persistentId/versions/:latest/files?persistentId=PID``  its files
* ``PUT  /api/datasets/:persistentId/versions/:draft?persistentId=PID``  the draft's metadata (makes a
  new draft from a released version)
* ``POST /api/datasets/:persistentId/add?persistentId=PID``       add a file (multipart: file, jsonData)
* ``POST /api/files/{id}/replace``                                replace a released file (multipart)
* ``DELETE /api/files/{id}``                                      take a file out of the draft (Dataverse
  refuses to replace a file that was never published)
* ``GET  /api/datasets/:persistentId/uploadurls?persistentId=PID&size=N``  pre-signed storage URL(s)
  for a direct upload (404: the dataset's store offers none); then ``PUT`` to the URL(s) (no token),
  ``PUT``/``DELETE`` ``/api/datasets/mpupload?...`` to complete or abort a multipart upload, and
* ``POST /api/datasets/:persistentId/addFiles?persistentId=PID``  register directly uploaded files
  (multipart: jsonData, a list), or ``/api/files/{id}/replace`` with a ``storageIdentifier``
* ``POST /api/datasets/:persistentId/actions/:publish?persistentId=PID&type=major``  publish

Locks: since Dataverse 5.0 a publication is finalised in the background under a
``finalizePublication`` lock, and the publish request answers 200 at once (202 only where a
pre-publication workflow runs). ``publish`` therefore waits until the dataset has no lock and then
requires its latest version to be RELEASED. Every write first waits until the dataset has no lock
(as dvuploader does); a write refused all the same (a lock taken in between: 400 for add, replace
and delete, 403 for metadata and publish, 500 for ``/addFiles``) is sent again once the locks are
gone if the dataset is locked, else the refusal stands. Each wait ends with a DataverseError after
``lock_timeout`` seconds.

Timeouts: ``timeout`` bounds each socket operation; the answer to an upload may take longer, as the
server stores and checksums the file first: its wait grows by a second per ANSWER_RATE bytes.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import re
import shlex
import ssl
import stat
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
CHUNK = 1 << 20
#: files of at least this many bytes go by direct upload where the dataset's store offers it
DIRECT_FROM = 1 << 30
#: bytes per second the server is assumed to store and checksum an upload at, at least (the answer's wait)
ANSWER_RATE = 10 << 20
#: statuses Dataverse refuses a write to a locked dataset with (Datasets/Files API, see the docstring)
LOCKED_STATUSES = {400, 403, 500}
#: the media type Dataverse gives ``.h5`` files (its MimeTypeDetectionByFileExtension.properties)
MEDIA_TYPES = {".h5": "application/x-h5"}


def checksums(path: Path, algorithms: tuple[str, ...] = ("md5", "sha256")) -> dict[str, str]:
    """{algorithm: hex digest} of a file, read once."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            for h in hashes.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashes.items()}


def directory_label(value: str) -> str | None:
    """A folder name as Dataverse stores it (StringUtil.sanitizeFileDirectory, which
    FileMetadata.setDirectoryLabel applies): runs of slashes and backslashes become one ``/``, and
    leading and trailing ``/``, ``-``, ``.`` and spaces go; None if nothing is left."""
    return re.sub(r"[\\/]+", "/", value).strip("/-. ") or None


class DataverseError(Exception):
    """The server refused a request or could not be reached (``status``: the HTTP status, if any)."""

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        super().__init__(message)


class ConnectionLost(DataverseError):
    """The connection dropped or timed out before the server answered."""


class InsecureURL(ValueError):
    """The API token would travel unencrypted to another machine."""


def check_url(url: str) -> str:
    """``url`` without a trailing slash; InsecureURL unless https, or http to this machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InsecureURL(f"not a server URL: {url!r} (expected https://HOST)")
    if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:
        raise InsecureURL(f"refusing to send the API token over plain http to {parts.hostname}: use https://")
    return url.rstrip("/")


@dataclass
class Upload:
    """A multipart/form-data body: ``jsonData`` and, unless ``path`` is None, a file."""

    path: Path | None
    json_data: Any
    boundary: str = field(default_factory=lambda: uuid.uuid4().hex)

    def parts(self) -> tuple[bytes, bytes]:
        """The bytes before the file's and after them."""
        head = (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"jsonData\"\r\n"
                f"Content-Type: application/json\r\n\r\n{json.dumps(self.json_data)}\r\n")
        if self.path is None:
            return head.encode(), f"--{self.boundary}--\r\n".encode()
        head += (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{self.path.name}\"\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n")
        return head.encode(), f"\r\n--{self.boundary}--\r\n".encode()

    def size(self) -> int:
        """The file's size (0 without a file)."""
        return 0 if self.path is None else self.path.stat().st_size

    def length(self) -> int:
        head, tail = self.parts()
        return len(head) + self.size() + len(tail)


@dataclass
class Request:
    method: str
    path: str  # with the query
    body: Any = None
    upload: Upload | None = None
    dataset: str | None = None  # the persistent id of the dataset a write changes (waited for while locked)


@dataclass
class Ticket:
    """What ``uploadurls`` answers: one pre-signed URL, or one per part with the paths that complete or
    abort the multipart upload; the storage identifier to register the file under."""

    storage_identifier: str
    part_size: int
    url: str | None = None
    urls: list[str] = field(default_factory=list)
    complete: str | None = None
    abort: str | None = None


class Client:
    """Requests to the Dataverse at ``url`` with ``token``; each answer's ``data`` or a DataverseError."""

    poll = 2.0  # seconds between two looks at a locked dataset's locks
    direct_from = DIRECT_FROM

    def __init__(self, url: str, token: str | None, *, timeout: float = 300.0, lock_timeout: float = 600.0):
        self.url = check_url(url)
        self.token = token
        self.timeout = timeout
        self.lock_timeout = lock_timeout

    # the endpoints
    def blocks(self, alias: str) -> list[str]:
        """The names of the metadata blocks collection ``alias`` offers."""
        data = self._in_collection(alias, Request("GET", f"/api/dataverses/{alias}/metadatablocks"))
        return [block["name"] for block in data]

    def find_dataset(self, alias: str, agency: str, value: str) -> tuple[str, dict[str, Any]] | None:
        """(persistent id, latest version) of the dataset in collection ``alias`` whose latest version's
        citation has the other id ``agency``/``value``; None if none has (a dataset whose latest version
        the token may not see has none)."""
        for item in self._in_collection(alias, Request("GET", f"/api/dataverses/{alias}/contents")):
            if item.get("type") != "dataset":
                continue
            pid = f"{item['protocol']}:{item['authority']}{item.get('separator', '/')}{item['identifier']}"
            version = self.latest_version(pid)
            if version is not None and (agency, value) in _other_ids(version):
                return pid, version
        return None

    def create_dataset(self, alias: str, body: dict[str, Any]) -> str:
        """Create a dataset (a draft) in collection ``alias``; its persistent id."""
        data = self._in_collection(alias, Request("POST", f"/api/dataverses/{alias}/datasets", body=body))
        return data["persistentId"]

    def latest_version(self, pid: str) -> dict[str, Any] | None:
        """The dataset's latest version the token may see (None: none)."""
        return self.send(Request("GET", _pid("/api/datasets/:persistentId/", pid))).get("latestVersion")

    def files(self, pid: str) -> list[dict[str, Any]]:
        return self.send(Request("GET", _pid("/api/datasets/:persistentId/versions/:latest/files", pid)))

    def locks(self, pid: str) -> list[dict[str, Any]]:
        return self.send(Request("GET", _pid("/api/datasets/:persistentId/locks", pid)))

    def update_metadata(self, pid: str, version: dict[str, Any]) -> dict[str, Any]:
        return self.send(Request("PUT", _pid("/api/datasets/:persistentId/versions/:draft", pid), body=version,
                                 dataset=pid))

    def add_file(self, pid: str, path: Path, json_data: dict[str, Any]) -> dict[str, Any]:
        data = self.send(Request("POST", _pid("/api/datasets/:persistentId/add", pid), upload=Upload(path, json_data),
                                 dataset=pid))
        return data["files"][0]

    def replace_file(self, pid: str, file_id: int, path: Path | None, json_data: dict[str, Any]) -> dict[str, Any]:
        """Replace a released file by ``path`` or (None) by the directly uploaded file ``json_data`` names."""
        data = self.send(Request("POST", f"/api/files/{file_id}/replace", upload=Upload(path, json_data), dataset=pid))
        return data["files"][0]

    def delete_file(self, pid: str, file_id: int) -> Any:
        return self.send(Request("DELETE", f"/api/files/{file_id}", dataset=pid))

    def add_files(self, pid: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Register directly uploaded files (jsonData entries with storageIdentifier, fileName, mimeType
        and checksum) in one request; each one's file as ``add_file`` gives it. Dataverse answers 200
        even where single files failed: those are reported here as a DataverseError."""
        data = self.send(Request("POST", _pid("/api/datasets/:persistentId/addFiles", pid), upload=Upload(None, entries),
                                 dataset=pid))
        files = data.get("Files", [])
        failed = [f"{(item.get('fileDetails') or {}).get('fileName', '?')}: {item.get('errorMessage') or item.get('message')}"
                  for item in files if "errorMessage" in item or "errorCode" in item]
        if failed or len(files) != len(entries):
            raise DataverseError(self._clean("the server did not register every uploaded file: "
                                             + ("; ".join(failed) or f"{len(files)} of {len(entries)} answered")))
        return [item["fileDetails"] for item in data["Files"]]

    def upload_urls(self, pid: str, size: int) -> Ticket | None:
        """Pre-signed storage URL(s) for a direct upload of ``size`` bytes; None where the dataset's store
        offers no direct upload (404)."""
        try:
            data = self.send(Request("GET", _pid("/api/datasets/:persistentId/uploadurls", pid, size=str(size))))
        except DataverseError as exc:
            if exc.status == 404:
                return None
            raise
        ticket = Ticket(data["storageIdentifier"], int(data["partSize"]), url=data.get("url"))
        if ticket.url is None:
            parts = data["urls"]
            ticket.urls = [parts[number] for number in sorted(parts, key=int)]
            ticket.complete, ticket.abort = data["complete"], data["abort"]
            if len(ticket.urls) != math.ceil(size / ticket.part_size) or not all(
                    path.startswith("/api/") for path in (ticket.complete, ticket.abort)):
                raise DataverseError(f"the server's direct-upload answer does not fit {size} bytes in parts of "
                                     f"{ticket.part_size}")
        return ticket

    def upload_direct(self, ticket: Ticket, path: Path) -> None:
        """Send ``path`` to the storage URL(s) of ``ticket`` (no API token goes there); a multipart upload
        is completed, or aborted if a part fails."""
        if ticket.url is not None:  # S3AccessIO presigns the single PUT with the tag dv-state=temp
            self._store_put(ticket.url, path, 0, path.stat().st_size, {"x-amz-tagging": "dv-state=temp"})
            return
        etags = {}
        try:
            for number, url in enumerate(ticket.urls, start=1):
                offset = (number - 1) * ticket.part_size
                etags[str(number)] = self._store_put(url, path, offset, min(ticket.part_size,
                                                                            path.stat().st_size - offset), {})
        except DataverseError:
            try:
                self.send(Request("DELETE", ticket.abort))
            except DataverseError:
                pass  # the storage drops an upload never completed; the failure that matters is the part's
            raise
        self.send(Request("PUT", ticket.complete, body=etags))

    def publish(self, pid: str) -> dict[str, Any]:
        """Publish the draft as a new major version and return the released version, once the
        publication finalised in the background is done; DataverseError if it did not release it."""
        self.send(Request("POST", _pid("/api/datasets/:persistentId/actions/:publish", pid, type="major"),
                          dataset=pid))
        self.wait_unlocked(pid)
        latest = self.latest_version(pid) or {}
        if latest.get("versionState") != "RELEASED":
            raise DataverseError(self._clean(
                f"the publication of {pid} did not complete: its latest version is {latest.get('versionState')} "
                "after the server finished (its page and notifications say why); run the same command again"))
        return latest

    def wait_unlocked(self, pid: str, deadline: float | None = None) -> None:
        """Return once dataset ``pid`` has no locks, looking every ``poll`` seconds; DataverseError naming
        the locks after ``lock_timeout`` seconds (or at ``deadline``, a ``time.monotonic()``)."""
        deadline = time.monotonic() + self.lock_timeout if deadline is None else deadline
        while locks := self.locks(pid):
            if time.monotonic() >= deadline:
                kinds = ", ".join(sorted({str(lock.get("lockType", "?")) for lock in locks}))
                raise DataverseError(self._clean(f"the dataset {pid} is still locked ({kinds}) after "
                                                 f"{self.lock_timeout:g} s; run the same command again later"))
            time.sleep(self.poll)

    def _in_collection(self, alias: str, request: Request) -> Any:
        """Send a request about collection ``alias``; a 404 names the collection."""
        try:
            return self.send(request)
        except DataverseError as exc:
            if exc.status == 404:
                raise DataverseError(f"no collection '{alias}' at {self.url}", 404) from None
            raise

    # the transport
    def headers(self, request: Request) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["X-Dataverse-key"] = self.token
        if request.body is not None:
            headers["Content-Type"] = "application/json"
        elif request.upload is not None:
            headers["Content-Type"] = f"multipart/form-data; boundary={request.upload.boundary}"
        return headers

    def send(self, request: Request) -> Any:
        """Send ``request``; the answer's ``data`` (DataverseError on an error status or a lost connection).
        A write waits until its dataset has no lock, and is sent again if refused while one was taken
        (see the module's docstring)."""
        deadline = time.monotonic() + self.lock_timeout
        if request.dataset:
            self.wait_unlocked(request.dataset, deadline)
        status, answer = self._exchange(request)
        while (request.dataset and status in LOCKED_STATUSES and time.monotonic() < deadline
               and self.locks(request.dataset)):
            self.wait_unlocked(request.dataset, deadline)
            status, answer = self._exchange(request)
        if not 200 <= status < 300:
            raise DataverseError(self._clean(self._message(request, status, answer)), status)
        return _field(answer, "data", answer)

    def _exchange(self, request: Request) -> tuple[int, Any]:
        """One request and its answer: (HTTP status, parsed JSON); ConnectionLost if no answer came."""
        parts = urlsplit(self.url)
        connection = self._connection(parts)
        path = parts.path.rstrip("/") + request.path
        try:
            connection.putrequest(request.method, path, skip_accept_encoding=True)
            headers = self.headers(request)
            payload = json.dumps(request.body).encode() if request.body is not None else b""
            headers["Content-Length"] = str(request.upload.length() if request.upload else len(payload))
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders()
            if request.upload is not None:
                head, tail = request.upload.parts()
                connection.send(head)
                if request.upload.path is not None:
                    _send_file(connection, request.upload.path, 0, request.upload.size())
                connection.send(tail)
                connection.sock.settimeout(self._answer_timeout(request.upload.size()))
            elif payload:
                connection.send(payload)
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionLost(self._clean(f"{request.method} {request.path.split('?')[0]}: the connection to "
                                             f"{parts.hostname} was lost ({type(exc).__name__}: {exc})")) from None
        finally:
            connection.close()
        try:
            return status, json.loads(raw) if raw else {}
        except ValueError:
            return status, {"message": raw[:200].decode(errors="replace")}

    def _store_put(self, url: str, path: Path, offset: int, length: int, headers: dict[str, str]) -> str:
        """PUT ``length`` bytes of ``path`` from ``offset`` to a pre-signed storage URL (never with the API
        token, never naming the URL, whose query is a credential); the ETag it answers."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DataverseError("the server's direct-upload URL is no http(s) URL")
        connection = self._connection(parts)
        try:
            connection.putrequest("PUT", parts.path + (f"?{parts.query}" if parts.query else ""),
                                  skip_accept_encoding=True)
            for name, value in {**headers, "Content-Length": str(length)}.items():
                connection.putheader(name, value)
            connection.endheaders()
            _send_file(connection, path, offset, length)
            connection.sock.settimeout(self._answer_timeout(length))
            response = connection.getresponse()
            status, raw, etag = response.status, response.read(), response.getheader("ETag")
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionLost(f"PUT to the storage at {parts.hostname}: the connection was lost "
                                 f"({type(exc).__name__}: {exc})") from None
        finally:
            connection.close()
        if status != 200 or not etag:
            raise DataverseError(f"the storage at {parts.hostname} refused {path.name} (bytes {offset}-"
                                 f"{offset + length}): {status} {raw[:200].decode(errors='replace')}", status)
        return etag

    def _connection(self, parts: SplitResult) -> http.client.HTTPConnection:
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)

    def _answer_timeout(self, size: int) -> float:
        """How long to wait for the answer to an upload of ``size`` bytes."""
        return self.timeout + size / ANSWER_RATE

    def _message(self, request: Request, status: int, answer: Any) -> str:
        message = " ".join(str(answer.get("message", "") if isinstance(answer, dict) else answer).split())
        if status == 401:
            return "the server refused the API token (401): check DATAVERSE_API_TOKEN"
        if status == 400:
            return f"the server rejected {request.method} {request.path.split('?')[0]} (400): {message or 'bad request'}"
        return f"{request.method} {request.path.split('?')[0]} failed ({status}): {message or 'no message'}"

    def _clean(self, text: str) -> str:
        """``text`` without the token (should a server or library ever echo it)."""
        return text.replace(self.token, "***") if self.token else text


class DryRun(Client):
    """Records each request (token redacted) instead of sending it, and answers as an empty server
    would: the collection offers the citation block only, holds no dataset yet, and its store offers
    no direct upload."""

    def __init__(self, url: str, token: str | None):
        super().__init__(url, token)
        self.requests: list[dict[str, Any]] = []

    def _exchange(self, request: Request) -> tuple[int, Any]:
        answer = self._answer(request)
        return (404, {"message": "Direct upload not supported"}) if answer is None else (200, answer)

    def publish(self, pid: str) -> dict[str, Any]:
        """Record the publish request; the version it would release."""
        self.send(Request("POST", _pid("/api/datasets/:persistentId/actions/:publish", pid, type="major"),
                          dataset=pid))
        return {"versionState": "RELEASED"}

    def _answer(self, request: Request) -> Any:
        """Record ``request``; the answer an empty server would give (None: 404)."""
        headers = {name: "***" if name == "X-Dataverse-key" else value for name, value in self.headers(request).items()}
        entry: dict[str, Any] = {"method": request.method, "url": self.url + request.path, "headers": headers}
        if request.body is not None:
            entry["json"] = request.body
        if request.upload is not None:
            entry["multipart"] = {"jsonData": request.upload.json_data}
            if request.upload.path is not None:
                path = request.upload.path
                entry["multipart"]["file"] = {"name": path.name, "size": path.stat().st_size, **checksums(path)}
        self.requests.append(entry)
        path = request.path.split("?")[0]
        if path.endswith("/metadatablocks"):
            return [{"name": "citation"}]
        if path.endswith(("/contents", "/files", "/locks")):
            return []
        if path.endswith("/datasets") and request.method == "POST":
            return {"id": 0, "persistentId": "(assigned by the server)"}
        if path == "/api/datasets/:persistentId/":
            return {"latestVersion": {"versionState": "DRAFT"}}
        if path.endswith("/uploadurls"):
            return None
        if path.endswith(("/add", "/replace")):
            return {"files": [{"dataFile": {"id": 0, "checksum": {"type": "SHA-256",
                                                                  "value": entry["multipart"]["file"]["sha256"]}}}]}
        return {}


def _send_file(connection: http.client.HTTPConnection, path: Path, offset: int, length: int) -> None:
    """Stream ``length`` bytes of ``path`` from ``offset``, CHUNK bytes at a time."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        while length > 0 and (block := handle.read(min(CHUNK, length))):
            connection.send(block)
            length -= len(block)


def _pid(path: str, pid: str, **extra: str) -> str:
    return f"{path}?{urlencode({'persistentId': pid, **extra})}"


def _field(answer: Any, name: str, default: Any = "") -> Any:
    """``answer[name]`` where the answer is a JSON object that has it, else ``default``."""
    return answer.get(name, default) if isinstance(answer, dict) else default


def _other_ids(version: dict[str, Any]) -> set[tuple[str, str]]:
    """The (agency, value) pairs of a dataset version's citation field ``otherId``."""
    fields = ((version.get("metadataBlocks") or {}).get("citation") or {}).get("fields") or []
    return {((entry.get("otherIdAgency") or {}).get("value"), (entry.get("otherIdValue") or {}).get("value"))
            for field in fields if field.get("typeName") == "otherId" for entry in field.get("value") or []}


def token_from(env: dict[str, str] | os._Environ[str], token_file: Path | None) -> str:
    """The API token from ``token_file`` or env DATAVERSE_API_TOKEN (ValueError, naming the source only).
    A token file others may read (group or world permissions) is refused with the chmod that fixes it,
    and so is a token that is not printable ASCII (Dataverse's tokens are UUIDs)."""
    if token_file is not None:
        try:
            mode = token_file.stat().st_mode
            if mode & 0o077:
                raise ValueError(f"the token file {token_file} is readable by others (mode {stat.S_IMODE(mode):04o}); "
                                 f"run: chmod 600 {shlex.quote(str(token_file))}")
            token = token_file.read_bytes().decode("ascii").strip()
        except OSError as exc:
            raise ValueError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"the token file {token_file} holds characters other than ASCII: not an API token") from None
        source = f"the token file {token_file}"
    else:
        token = env.get("DATAVERSE_API_TOKEN", "").strip()
        source = "DATAVERSE_API_TOKEN"
    if not token:
        raise ValueError(f"no API token: {source} is empty or unset (set DATAVERSE_API_TOKEN or pass --token-file)")
    if not token.isascii():
        raise ValueError(f"the API token in {source} holds characters other than ASCII: not an API token")
    if any(ord(c) < 33 or ord(c) == 127 for c in token):
        raise ValueError(f"the API token in {source} contains spaces or control characters")
    return token
