"""The stand-in Hub (tests/hub_standin.py) against the real `huggingface_hub` client: what is
uploaded comes back byte for byte, by branch and by commit sha, in this process and in a
subprocess pointed at it through HF_ENDPOINT, and then offline from the same cache; missing
repos, revisions and files raise the client's usual errors. Nothing may reach huggingface.co."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, \
    RevisionNotFoundError

import hub_standin
from hub_standin import INITIAL_FILES, INITIAL_MESSAGE, HubStandin

hub = hub_standin.hub  # the fixture: a fresh stand-in Hub for each test

REPO = "owner/model"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fail, and remember, any look-up of a host other than this machine: the client swallows a
    failed connection (and falls back on its cache), so the check is made when the test ends.

    `endpoint=` does not cover all: building its User-Agent, the client fetches a list of AI agents
    from `constants.ENDPOINT` (huggingface.co here) unless telemetry is off, which it reads from
    HF_HUB_DISABLE_TELEMETRY at import, hence the patched constant. HF_HOME keeps what hf_xet
    writes (its logs) in the test's folder."""
    looked_up: list[str] = []
    getaddrinfo = socket.getaddrinfo

    def loopback_only(host: str | None, *args: object, **kwargs: object) -> object:
        if host not in LOOPBACK:
            looked_up.append(str(host))
            raise OSError(f"network access to {host} in a test")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    yield
    assert looked_up == []


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def read_folder(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def checkpoint(weights: bytes, note: str = "first") -> dict[str, bytes]:
    return {"config.json": b'{"hidden_size": 8}\n', "vocab.txt": b"[PAD]\n[UNK]\nkey\nphrase\n",
            "notes/readme.txt": note.encode(), "model.safetensors": weights}


def upload(hub: HubStandin, folder: Path, message: str, **kwargs: object) -> str:
    api = HfApi(endpoint=hub.url, token="standin-token")
    api.create_repo(REPO, exist_ok=True)
    return api.upload_folder(folder_path=folder, repo_id=REPO, commit_message=message, **kwargs).oid


def test_upload_then_download_the_same_bytes(hub: HubStandin, tmp_path: Path) -> None:
    files = checkpoint(os.urandom(3 * 1024 * 1024))
    api = HfApi(endpoint=hub.url, token="standin-token")
    url = api.create_repo(REPO, exist_ok=True)
    assert (url.repo_id, url.endpoint) == (REPO, hub.url)
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO  # 409 from the stand-in, as from the Hub
    with pytest.raises(HfHubHTTPError) as exists:
        api.create_repo(REPO)
    assert exists.value.response.status_code == 409

    sha = api.upload_folder(folder_path=write_folder(tmp_path / "ckpt", files), repo_id=REPO,
                            commit_message="upload ckpt").oid
    assert hub.files(REPO) == {**INITIAL_FILES, **files}
    assert [commit.message for commit in hub.repo(REPO).commits] == [INITIAL_MESSAGE, "upload ckpt"]
    assert not any("lfs" in path or "xet" in path for _, path in hub.requests)  # all went inline

    info = api.model_info(REPO, files_metadata=True)
    assert info.sha == sha and not info.private
    assert {sibling.rfilename: sibling.size for sibling in info.siblings} == \
        {path: len(content) for path, content in hub.files(REPO).items()}
    assert sorted(api.list_repo_files(REPO)) == sorted(hub.files(REPO))

    cache = tmp_path / "cache"
    snapshot = Path(snapshot_download(REPO, cache_dir=cache, endpoint=hub.url))
    assert snapshot.name == sha and read_folder(snapshot) == hub.files(REPO)
    weights = hf_hub_download(REPO, "model.safetensors", cache_dir=tmp_path / "other", endpoint=hub.url)
    assert Path(weights).read_bytes() == files["model.safetensors"]
    assert ("HEAD", f"/{REPO}/resolve/{sha}/model.safetensors") in hub.requests


def test_a_second_upload_moves_main_and_the_first_stays_reachable_by_sha(hub: HubStandin, tmp_path: Path) -> None:
    first_files, second_files = checkpoint(b"\0" * 1000), checkpoint(b"\1" * 2000, note="second")
    first = upload(hub, write_folder(tmp_path / "first", first_files), "first")
    second = upload(hub, write_folder(tmp_path / "second", second_files), "second")
    assert first != second and hub.repo(REPO).branches["main"] == second
    assert hub.repo(REPO).commits[-1].parent == first
    commits = hub.requests.count(("POST", f"/api/models/{REPO}/commit/main"))

    cache = tmp_path / "cache"
    assert read_folder(Path(snapshot_download(REPO, revision=first, cache_dir=cache, endpoint=hub.url))) == \
        {**INITIAL_FILES, **first_files}
    assert read_folder(Path(snapshot_download(REPO, revision="main", cache_dir=cache, endpoint=hub.url))) == \
        {**INITIAL_FILES, **second_files}
    note = hf_hub_download(REPO, "notes/readme.txt", revision=first, cache_dir=cache, endpoint=hub.url)
    assert Path(note).read_bytes() == b"first"

    # The client leaves unchanged files out of a commit, and makes none when nothing changed.
    assert upload(hub, tmp_path / "second", "again") == second
    assert hub.requests.count(("POST", f"/api/models/{REPO}/commit/main")) == commits


def test_missing_repo_revision_and_file_raise_the_client_errors(hub: HubStandin, tmp_path: Path) -> None:
    upload(hub, write_folder(tmp_path / "ckpt", checkpoint(b"weights")), "upload")
    cache = tmp_path / "cache"
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("owner/missing", cache_dir=cache, endpoint=hub.url)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token="standin-token").model_info("owner/missing")
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO, revision="no-such-branch", cache_dir=cache, endpoint=hub.url)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO, revision="0" * 40, cache_dir=cache, endpoint=hub.url)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "no-such-file.txt", cache_dir=cache, endpoint=hub.url)


def test_private_repos_are_hidden_and_writes_need_a_token(hub: HubStandin, tmp_path: Path) -> None:
    with pytest.raises(HfHubHTTPError) as refused:
        HfApi(endpoint=hub.url, token=False).create_repo(REPO)
    assert refused.value.response.status_code == 401
    HfApi(endpoint=hub.url, token="standin-token").create_repo(REPO, private=True)
    assert hub.repo(REPO).private
    with pytest.raises(HfHubHTTPError) as refused:
        HfApi(endpoint=hub.url, token=False).upload_folder(
            folder_path=write_folder(tmp_path / "ckpt", checkpoint(b"w")), repo_id=REPO, commit_message="m")
    assert refused.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download(REPO, cache_dir=tmp_path / "cache", endpoint=hub.url, token=False)
    snapshot = snapshot_download(REPO, cache_dir=tmp_path / "cache", endpoint=hub.url, token="standin-token")
    assert read_folder(Path(snapshot)) == INITIAL_FILES


def test_a_branch_replaced_as_bertkpe_publishes(hub: HubStandin, tmp_path: Path) -> None:
    """`bertkpe.hub.push_to_hub`: a branch, a README.md model card (its metadata checked by the
    Hub first), and `delete_patterns=["*"]` so that the branch holds exactly the new folder."""
    upload(hub, write_folder(tmp_path / "main", checkpoint(b"main weights")), "on main")
    api = HfApi(endpoint=hub.url, token="standin-token")
    for _ in range(2):
        api.create_branch(REPO, branch="v1", exist_ok=True)
    published = {"README.md": b"---\nlibrary_name: bertkpe\n---\n# Model\n", "model.safetensors": b"v1 weights"}
    folder = write_folder(tmp_path / "v1", {**published, "training_state.pt": b"optimizer"})
    api.upload_folder(folder_path=folder, repo_id=REPO, revision="v1", commit_message="v1",
                      ignore_patterns=["training_state.pt"], delete_patterns=["*"])
    assert hub.files(REPO, "v1") == {**INITIAL_FILES, **published}
    assert hub.files(REPO)["model.safetensors"] == b"main weights"
    assert ("POST", "/api/validate-yaml") in hub.requests
    assert read_folder(Path(snapshot_download(REPO, revision="v1", cache_dir=tmp_path / "cache",
                                              endpoint=hub.url))) == hub.files(REPO, "v1")


def test_a_subprocess_downloads_through_hf_endpoint_then_finds_it_offline(hub: HubStandin, tmp_path: Path) -> None:
    files = checkpoint(os.urandom(100_000))
    sha = upload(hub, write_folder(tmp_path / "ckpt", files), "upload")
    fetch = f"from huggingface_hub import snapshot_download; print(snapshot_download({REPO!r}))"
    env = hub.client_env(tmp_path / "hf_home")

    online = subprocess.run([sys.executable, "-c", fetch], env=env, capture_output=True, text=True, timeout=60)
    assert online.returncode == 0, online.stderr
    snapshot = Path(online.stdout.strip())
    assert snapshot.name == sha and read_folder(snapshot) == {**INITIAL_FILES, **files}
    assert ("GET", f"/{REPO}/resolve/{sha}/model.safetensors") in hub.requests

    served = len(hub.requests)
    offline = subprocess.run([sys.executable, "-c", fetch], env={**env, "HF_HUB_OFFLINE": "1"},
                             capture_output=True, text=True, timeout=60)
    assert offline.returncode == 0, offline.stderr
    assert Path(offline.stdout.strip()) == snapshot and len(hub.requests) == served
