"""A local stand-in of the Hugging Face Hub HTTP API, so that tests of publishing and fetching
checkpoints run the real, unpatched `huggingface_hub` client with no network.

The client reaches it in-process through `endpoint=hub.url`, or in a subprocess (the `bertkpe`
command line) through the environment of `hub.client_env(...)` (`HF_ENDPOINT`, `HF_TOKEN`,
`HF_HOME`). What it serves, as the Hub does:

- `create_repo` (409 with the repo's url when it exists: `exist_ok` relies on it) and
  `create_branch`; a new repo holds an "initial commit" with a `.gitattributes`, like on the Hub;
- `upload_folder` / `create_commit`: the preupload answer is `uploadMode: "regular"` for every file,
  so the client sends all contents base64 inside the NDJSON commit and no LFS or Xet storage is
  needed (with `hf_xet` installed the client takes its Xet pipeline, which still commits
  "regular" files that way); the preupload answer also carries each existing file's git blob id,
  so the client leaves unchanged files out of the commit, and makes no commit at all when nothing
  changed;
- `repo_info` / `model_info`, `list_repo_tree` / `list_repo_files`, and HEAD/GET
  `/{repo_id}/resolve/{revision}/{path}` with `X-Repo-Commit`, `ETag` and `Content-Length`
  (`hf_hub_download`, `snapshot_download`);
- errors with the `X-Error-Code` the client turns into `RepositoryNotFoundError` (401 without a
  token, 404 with one, also for private repos read without a token), `RevisionNotFoundError` and
  `EntryNotFoundError`; writes without an `Authorization: Bearer` header get 401. Any token is
  accepted, for one user who may do everything.

Model repos only; repos live in memory. Requests are served one at a time under a lock, each in
its own thread, so a test may wait on a subprocess while the server keeps answering.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

# A new Hub repo's first commit: the `.gitattributes` that routes large files to LFS (abridged).
INITIAL_FILES = {".gitattributes": b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
                                   b"*.pt filter=lfs diff=lfs merge=lfs -text\n"
                                   b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
INITIAL_MESSAGE = "initial commit"

_REPO = r"(?P<repo>[^/]+/[^/]+)"
# Revisions come URL-quoted as one path segment ("refs%2Fpr%2F1"); file paths keep their slashes.
_API_ROUTE = re.compile(rf"/api/models/{_REPO}(?:/(?P<action>revision|tree|preupload|commit|branch)"
                        r"/(?P<revision>[^/]+)(?P<path>/.*)?)?")
_RESOLVE_ROUTE = re.compile(rf"/{_REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)")


def blob_id(content: bytes) -> str:
    """The git blob id of `content`, as the Hub gives it for regular files (ETag, tree `oid`)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Commit:
    """One commit: the whole tree of the repo after it (path -> contents)."""

    sha: str
    message: str
    parent: str | None
    files: dict[str, bytes]
    date: str


@dataclass
class Repo:
    """A model repo: its commits in the order they were made, and its branches (name -> sha)."""

    private: bool
    created_at: str = field(default_factory=_now)
    commits: list[Commit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)

    def commit_at(self, revision: str) -> Commit:
        """The commit a branch name or a full commit sha points at; 404 RevisionNotFound otherwise."""
        sha = self.branches.get(revision, revision)
        for commit in self.commits:
            if commit.sha == sha:
                return commit
        raise _HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")

    def add_commit(self, branch: str, message: str, files: dict[str, bytes]) -> Commit:
        """Commit `files` as the new tree of `branch` (created if new); its sha hashes the
        parent, the message, the tree and the commit's rank, so no two commits share one."""
        parent = self.branches.get(branch)
        tree = sorted((path, blob_id(content)) for path, content in files.items())
        sha = hashlib.sha1(json.dumps([len(self.commits), parent, message, tree]).encode()).hexdigest()
        commit = Commit(sha=sha, message=message, parent=parent, files=files, date=_now())
        self.commits.append(commit)
        self.branches[branch] = sha
        return commit


class _HubError(Exception):
    """An error answer as the Hub gives it: JSON body, `X-Error-Code` / `X-Error-Message` headers."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 headers: dict[str, str] | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers, self.fields = headers or {}, fields


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _json(data: Any, status: int = 200) -> _Response:
    return _Response(status, json.dumps(data).encode(), {"Content-Type": "application/json"})


def _error_response(error: _HubError) -> _Response:
    response = _json({"error": error.message, **error.fields}, error.status)
    response.headers.update(error.headers)
    response.headers["X-Error-Message"] = error.message
    if error.code is not None:
        response.headers["X-Error-Code"] = error.code
    return response


class HubStandin:
    """The stand-in Hub: bound to a free 127.0.0.1 port at creation (`url`), serving while
    used as a context manager. Read its state between client calls: `files`, `repo`,
    `requests` (every (method, path) it was sent, query left out)."""

    def __init__(self) -> None:
        self._server = _Server(self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.requests: list[tuple[str, str]] = []
        self._repos: dict[str, Repo] = {}
        self._lock = threading.Lock()
        # A short poll so that leaving the context (`shutdown`) takes milliseconds, not half a second.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="hub-standin", daemon=True)

    def __enter__(self) -> HubStandin:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def repo(self, repo_id: str) -> Repo:
        """The repo `repo_id` (KeyError if it was never created): its commits, branches, privacy."""
        with self._lock:
            return self._repos[repo_id]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of `repo_id` at a branch or commit sha."""
        with self._lock:
            return dict(self._repos[repo_id].commit_at(revision).files)

    def client_env(self, hf_home: str | os.PathLike, token: str = "standin-token") -> dict[str, str]:
        """The environment of a subprocess whose `huggingface_hub` should use this stand-in,
        online, with a token and its own cache, and send no telemetry."""
        return {**os.environ, "HF_ENDPOINT": self.url, "HF_TOKEN": token, "HF_HOME": str(hf_home),
                "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}

    def handle(self, method: str, target: str, body: bytes, authorized: bool) -> _Response:
        """The answer to one request (called by the server's threads)."""
        url = urlsplit(target)
        with self._lock:
            self.requests.append((method, url.path))
            try:
                return self._route(method, url.path, parse_qs(url.query), body, authorized)
            except _HubError as error:
                return _error_response(error)
            except (KeyError, ValueError, TypeError) as error:  # a body the client would not send
                return _error_response(_HubError(400, f"malformed request: {error!r}"))

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes,
               authorized: bool) -> _Response:
        if (method, path) == ("POST", "/api/repos/create"):
            return self._create_repo(json.loads(body), authorized)
        if (method, path) == ("POST", "/api/validate-yaml"):  # README.md metadata, checked before uploads
            return _json({"errors": [], "warnings": []})
        api = _API_ROUTE.fullmatch(path)
        if api is not None:
            repo_id, action = api["repo"], api["action"]
            revision = unquote(api["revision"] or "main")
            subpath = unquote(api["path"] or "").strip("/")
            if method == "GET" and action in (None, "revision") and not subpath:
                return self._model_info(repo_id, revision, query, authorized)
            if method == "GET" and action == "tree":
                return self._tree(repo_id, revision, subpath, query.get("recursive") == ["true"], authorized)
            if method == "POST" and action == "preupload" and not subpath:
                return self._preupload(repo_id, revision, json.loads(body), authorized)
            if method == "POST" and action == "commit" and not subpath:
                return self._commit(repo_id, revision, query, body, authorized)
            if method == "POST" and action == "branch" and not subpath:
                return self._create_branch(repo_id, revision, json.loads(body or b"{}"), authorized)
        resolve = _RESOLVE_ROUTE.fullmatch(path)
        if resolve is not None and method in ("GET", "HEAD"):
            return self._resolve(resolve["repo"], unquote(resolve["revision"]), unquote(resolve["path"]),
                                 authorized)
        raise _HubError(404, f"the stand-in does not serve {method} {path}")

    def _readable(self, repo_id: str, authorized: bool) -> Repo:
        repo = self._repos.get(repo_id)
        if repo is None or (repo.private and not authorized):
            raise _HubError(404 if authorized else 401, "Repository not found", code="RepoNotFound")
        return repo

    def _writable(self, repo_id: str, authorized: bool) -> Repo:
        if not authorized:
            raise _HubError(401, "Invalid username or password.")
        return self._readable(repo_id, authorized)

    def _create_repo(self, request: dict[str, Any], authorized: bool) -> _Response:
        if not authorized:
            raise _HubError(401, "Invalid username or password.")
        if request.get("type", "model") != "model" or not request.get("organization"):
            raise _HubError(400, "the stand-in creates model repos named owner/name only")
        repo_id = f"{request['organization']}/{request['name']}"
        url = f"{self.url}/{repo_id}"
        if repo_id in self._repos:
            raise _HubError(409, "You already created this model repo", url=url)
        repo = self._repos[repo_id] = Repo(private=request.get("visibility") == "private")
        repo.add_commit("main", INITIAL_MESSAGE, dict(INITIAL_FILES))
        return _json({"url": url, "name": repo_id})

    def _create_branch(self, repo_id: str, branch: str, request: dict[str, Any], authorized: bool) -> _Response:
        repo = self._writable(repo_id, authorized)
        if branch in repo.branches:
            raise _HubError(409, "Reference already exists")
        repo.branches[branch] = repo.commit_at(request.get("startingPoint", "main")).sha
        return _json({})

    def _model_info(self, repo_id: str, revision: str, query: dict[str, list[str]], authorized: bool) -> _Response:
        repo = self._readable(repo_id, authorized)
        commit = repo.commit_at(revision)
        with_blobs = query.get("blobs") == ["true"]
        siblings = [{"rfilename": path, **({"size": len(content), "blobId": blob_id(content)} if with_blobs else {})}
                    for path, content in sorted(commit.files.items())]
        return _json({"_id": repo_id, "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0],
                      "sha": commit.sha, "lastModified": commit.date, "createdAt": repo.created_at,
                      "private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0,
                      "tags": [], "siblings": siblings})

    def _tree(self, repo_id: str, revision: str, folder: str, recursive: bool, authorized: bool) -> _Response:
        """The files and folders under `folder`: all of them if `recursive`, else its children only."""
        commit = self._readable(repo_id, authorized).commit_at(revision)
        prefix = f"{folder}/" if folder else ""
        files = {path: content for path, content in commit.files.items() if path.startswith(prefix)}
        if folder and not files:
            raise _HubError(404, f"{folder} does not exist on {revision}", code="EntryNotFound")
        folders = {prefix + "/".join(parts[:depth]) for parts in (path[len(prefix):].split("/") for path in files)
                   for depth in range(1, len(parts))}
        entries = [{"type": "directory", "oid": hashlib.sha1(f"{commit.sha}:{path}".encode()).hexdigest(),
                    "size": 0, "path": path} for path in sorted(folders)]
        entries += [{"type": "file", "oid": blob_id(content), "size": len(content), "path": path}
                    for path, content in sorted(files.items())]
        return _json([entry for entry in entries if recursive or "/" not in entry["path"][len(prefix):]])

    def _preupload(self, repo_id: str, revision: str, request: dict[str, Any], authorized: bool) -> _Response:
        """Every file "regular" (content inline in the commit), with the blob id of the file the
        revision already holds at that path, from which the client drops unchanged files."""
        head = self._writable(repo_id, authorized).commit_at(revision)
        answers = []
        for file in request["files"]:
            existing = head.files.get(file["path"])
            answers.append({"path": file["path"], "uploadMode": "regular", "shouldIgnore": False,
                            **({"oid": blob_id(existing)} if existing is not None else {})})
        return _json({"files": answers, "commitOid": head.sha})

    def _commit(self, repo_id: str, branch: str, query: dict[str, list[str]], body: bytes,
                authorized: bool) -> _Response:
        repo = self._writable(repo_id, authorized)
        if "create_pr" in query:
            raise _HubError(400, "the stand-in does not open pull requests")
        if branch not in repo.branches:
            raise _HubError(404, f"Invalid rev id: {branch} (commits go to a branch)", code="RevisionNotFound")
        head = repo.commit_at(branch)
        header, *operations = [json.loads(line) for line in body.splitlines() if line.strip()]
        if header["key"] != "header":
            raise ValueError("the commit does not start with its header")
        parent = header["value"].get("parentCommit")
        if parent is not None and parent != head.sha:
            raise _HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for operation in operations:
            key, path = operation["key"], operation["value"]["path"]
            if key == "file":
                files[path] = base64.b64decode(operation["value"]["content"])
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise _HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
            elif key == "deletedFolder":
                files = {name: content for name, content in files.items()
                         if not name.startswith(path.rstrip("/") + "/")}
            else:
                raise _HubError(400, f"the stand-in stores files sent inline only, not {key!r}")
        commit = repo.add_commit(branch, header["value"]["summary"], files)
        return _json({"success": True, "commitOid": commit.sha, "hookOutput": "", "pullRequestUrl": None,
                      "commitUrl": f"{self.url}/{repo_id}/commit/{commit.sha}"})

    def _resolve(self, repo_id: str, revision: str, path: str, authorized: bool) -> _Response:
        """A file's contents, with the headers `hf_hub_download` needs: the commit the revision
        resolved to (X-Repo-Commit), the ETag naming the blob in the cache, and the size."""
        commit = self._readable(repo_id, authorized).commit_at(revision)
        content = commit.files.get(path)
        if content is None:
            raise _HubError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.sha})
        return _Response(200, content, {"Content-Type": "application/octet-stream", "ETag": f'"{blob_id(content)}"',
                                        "X-Repo-Commit": commit.sha})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, standin: HubStandin) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.standin = standin


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        authorized = self.headers.get("Authorization", "").startswith("Bearer ")
        response = self.server.standin.handle(self.command, self.path, body, authorized)
        self.send_response(response.status)
        for name, value in {**response.headers, "Content-Length": str(len(response.body))}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the stand-in's `requests` list is the log."""


@pytest.fixture
def hub() -> Iterator[HubStandin]:
    """A fresh, empty stand-in Hub for one test (take it into a test module: `hub = hub_standin.hub`)."""
    with HubStandin() as standin:
        yield standin
