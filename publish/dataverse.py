"""A small client for the Dataverse native API: the few requests a deposit needs.

Written on the standard library (``http.client``) rather than pyDataverse 0.3.5 and dvuploader
0.3.3: installing those into this environment would downgrade typer (to 0.15), click (to 8.1) and
rich (to 13.9), which the ``campaign`` command uses, and add httpx, anyio, aiofiles, tenacity and
nest-asyncio for what are seven plain requests here. Streaming a multipart upload ourselves also
lets an interrupted upload be reported file by file.

Requests (``X-Dataverse-key`` carries the API token; it is never put in a URL, message or file):

* ``GET  /api/dataverses/{alias}/metadatablocks``                 the collection's metadata blocks
* ``GET  /api/dataverses/{alias}/contents``                       its datasets (drafts too, for their
  owner's token): their latest versions' ``otherId`` finds the dataset of a create request whose
  answer was lost (the Search API would take one request, but its index is filled asynchronously
  and may miss a dataset created a moment ago)
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
* ``POST /api/datasets/:persistentId/actions/:publish?persistentId=PID&type=major``  publish

A write the server accepts but goes on with (202 Accepted, ``WORKFLOW_IN_PROGRESS``: a publication
finalised in the background while the dataset holds a ``finalizePublication`` lock) returns once the
dataset's locks are gone; a write refused because the dataset is locked (403 "Dataset cannot be
edited due to dataset lock.") is sent once more when they are gone. Either wait ends with a
DataverseError after ``lock_timeout`` seconds.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
CHUNK = 1 << 20



def checksums(path: Path, algorithms: tuple[str, ...] = ("md5", "sha256")) -> dict[str, str]:
    """{algorithm: hex digest} of a file, read once."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            for h in hashes.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashes.items()}

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
    """A file sent as multipart/form-data with its ``jsonData``."""

    path: Path
    json_data: dict[str, Any]
    boundary: str = field(default_factory=lambda: uuid.uuid4().hex)

    def parts(self) -> tuple[bytes, bytes]:
        head = (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"jsonData\"\r\n"
                f"Content-Type: application/json\r\n\r\n{json.dumps(self.json_data)}\r\n"
                f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{self.path.name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        return head, f"\r\n--{self.boundary}--\r\n".encode()

    def length(self) -> int:
        head, tail = self.parts()
        return len(head) + self.path.stat().st_size + len(tail)


@dataclass
class Request:
    method: str
    path: str  # with the query
    body: dict[str, Any] | None = None
    upload: Upload | None = None
    dataset: str | None = None  # the persistent id of the dataset a write changes (waited for while locked)


class Client:
    """Requests to the Dataverse at ``url`` with ``token``; each answer's ``data`` or a DataverseError."""

    poll = 2.0  # seconds between two looks at a locked dataset's locks

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
        citation has the other id ``agency``/``value``; None if none has."""
        for item in self._in_collection(alias, Request("GET", f"/api/dataverses/{alias}/contents")):
            if item.get("type") != "dataset":
                continue
            pid = f"{item['protocol']}:{item['authority']}{item.get('separator', '/')}{item['identifier']}"
            version = self.latest_version(pid)
            if (agency, value) in _other_ids(version):
                return pid, version
        return None

    def create_dataset(self, alias: str, body: dict[str, Any]) -> str:
        """Create a dataset (a draft) in collection ``alias``; its persistent id."""
        data = self._in_collection(alias, Request("POST", f"/api/dataverses/{alias}/datasets", body=body))
        return data["persistentId"]

    def latest_version(self, pid: str) -> dict[str, Any]:
        return self.send(Request("GET", _pid("/api/datasets/:persistentId/", pid)))["latestVersion"]

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

    def replace_file(self, pid: str, file_id: int, path: Path, json_data: dict[str, Any]) -> dict[str, Any]:
        data = self.send(Request("POST", f"/api/files/{file_id}/replace", upload=Upload(path, json_data), dataset=pid))
        return data["files"][0]

    def delete_file(self, pid: str, file_id: int) -> Any:
        return self.send(Request("DELETE", f"/api/files/{file_id}", dataset=pid))

    def publish(self, pid: str) -> dict[str, Any]:
        return self.send(Request("POST", _pid("/api/datasets/:persistentId/actions/:publish", pid, type="major"),
                                 dataset=pid))

    def wait_unlocked(self, pid: str) -> None:
        """Return once dataset ``pid`` has no locks, looking every ``poll`` seconds; DataverseError naming
        the locks after ``lock_timeout`` seconds."""
        deadline = time.monotonic() + self.lock_timeout
        while locks := self.locks(pid):
            if time.monotonic() >= deadline:
                kinds = ", ".join(sorted({lock.get("lockType", "?") for lock in locks}))
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
        A write to a locked dataset is waited for (see the module's docstring)."""
        status, answer = self._exchange(request)
        if status == 403 and request.dataset and "lock" in str(_field(answer, "message")).lower():
            self.wait_unlocked(request.dataset)
            status, answer = self._exchange(request)
        if not 200 <= status < 300:
            raise DataverseError(self._clean(self._message(request, status, answer)), status)
        if status == 202 and request.dataset:
            self.wait_unlocked(request.dataset)
        return _field(answer, "data", answer)

    def _exchange(self, request: Request) -> tuple[int, Any]:
        """One request and its answer: (HTTP status, parsed JSON); ConnectionLost if no answer came."""
        parts = urlsplit(self.url)
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=self.timeout,
                                                     context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
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
                with open(request.upload.path, "rb") as handle:
                    while block := handle.read(CHUNK):
                        connection.send(block)
                connection.send(tail)
            elif payload:
                connection.send(payload)
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionLost(self._clean(f"{request.method} {request.path}: the connection to {parts.hostname} "
                                             f"was lost ({type(exc).__name__}: {exc})")) from None
        finally:
            connection.close()
        try:
            return status, json.loads(raw) if raw else {}
        except ValueError:
            return status, {"message": raw[:200].decode(errors="replace")}

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
    would: the collection offers the citation block only and holds no dataset yet."""

    def __init__(self, url: str, token: str | None):
        super().__init__(url, token)
        self.requests: list[dict[str, Any]] = []

    def _exchange(self, request: Request) -> tuple[int, Any]:
        return 200, self._answer(request)

    def _answer(self, request: Request) -> Any:
        """Record ``request``; the answer an empty server would give."""
        headers = {name: "***" if name == "X-Dataverse-key" else value for name, value in self.headers(request).items()}
        entry: dict[str, Any] = {"method": request.method, "url": self.url + request.path, "headers": headers}
        if request.body is not None:
            entry["json"] = request.body
        if request.upload is not None:
            path = request.upload.path
            entry["multipart"] = {"jsonData": request.upload.json_data,
                                  "file": {"name": path.name, "size": path.stat().st_size, **checksums(path)}}
        self.requests.append(entry)
        path = request.path.split("?")[0]
        if path.endswith("/metadatablocks"):
            return [{"name": "citation"}]
        if path.endswith("/contents"):
            return []
        if path.endswith("/datasets") and request.method == "POST":
            return {"id": 0, "persistentId": "(assigned by the server)"}
        if path == "/api/datasets/:persistentId/":
            return {"latestVersion": {"versionState": "DRAFT"}}
        if path.endswith("/files"):
            return []
        if path.endswith(("/add", "/replace")):
            return {"files": [{"dataFile": {"id": 0, "checksum": {"type": "SHA-256",
                                                                  "value": entry["multipart"]["file"]["sha256"]}}}]}
        return {}


def _pid(path: str, pid: str, **extra: str) -> str:
    return f"{path}?{urlencode({'persistentId': pid, **extra})}"


def _field(answer: Any, name: str, default: Any = "") -> Any:
    """``answer[name]`` where the answer is a JSON object that has it, else ``default``."""
    return answer.get(name, default) if isinstance(answer, dict) else default


def _other_ids(version: dict[str, Any]) -> set[tuple[str, str]]:
    """The (agency, value) pairs of a dataset version's citation field ``otherId``."""
    fields = version.get("metadataBlocks", {}).get("citation", {}).get("fields", [])
    return {(entry.get("otherIdAgency", {}).get("value"), entry.get("otherIdValue", {}).get("value"))
            for field in fields if field.get("typeName") == "otherId" for entry in field.get("value", [])}


def token_from(env: dict[str, str] | os._Environ[str], token_file: Path | None) -> str:
    """The API token from ``token_file`` or env DATAVERSE_API_TOKEN (ValueError, naming the source only)."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        source = f"the token file {token_file}"
    else:
        token = env.get("DATAVERSE_API_TOKEN", "").strip()
        source = "DATAVERSE_API_TOKEN"
    if not token:
        raise ValueError(f"no API token: {source} is empty or unset (set DATAVERSE_API_TOKEN or pass --token-file)")
    if any(ord(c) < 33 or ord(c) == 127 for c in token):
        raise ValueError(f"the API token in {source} contains spaces or control characters")
    return token
