"""hairlib.weights: download, resume, verify and explain, against a local HTTP server (offline).

The server (http.server in a thread on 127.0.0.1) serves small generated files, honours Range
requests unless told not to, can be told to cut the connection after N bytes, records the
Range header of every request, and imitates Google Drive's confirmation page at /download.
"""
import hashlib
import os
import re
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import hairlib.weights as W

DATA = bytes((i * 7919 + (i >> 8) * 31) % 251 for i in range(300_000))
DATA_SHA = hashlib.sha256(DATA).hexdigest()
CUT = 100_000


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):          # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        parts = urllib.parse.urlsplit(self.path)
        srv.requests.append((parts.path, self.headers.get("Range")))
        if parts.path == "/download":        # imitation of drive.usercontent.google.com
            query = urllib.parse.parse_qs(parts.query)
            if "uuid" not in query:
                page = (b"<html><head><title>Google Drive - Virus scan warning</title></head>"
                        b"<body><form id=\"download-form\" action=\"/download\" method=\"get\">"
                        b"<input type=\"submit\" value=\"Download anyway\"/>"
                        b"<input type=\"hidden\" name=\"id\" value=\"" + query["id"][0].encode()
                        + b"\"><input type=\"hidden\" name=\"export\" value=\"download\">"
                        b"<input type=\"hidden\" name=\"confirm\" value=\"t\">"
                        b"<input type=\"hidden\" name=\"uuid\" value=\"u-1\"></form></body></html>")
                return self._send(200, page, "text/html; charset=utf-8")
            body = srv.files.get("/drive/" + query["id"][0])
        else:
            body = srv.files.get(parts.path)
        if body is None:
            return self._send(404, b"not found", "text/plain")
        ctype = "text/html" if parts.path in srv.html else "application/octet-stream"
        rng = self.headers.get("Range")
        if rng and srv.ranges:
            start = int(re.match(r"bytes=(\d+)-", rng).group(1))
            if start >= len(body):
                return self._send(416, b"", ctype, {"Content-Range": f"bytes */{len(body)}"})
            extra = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
            return self._send(206, body[start:], ctype, extra, parts.path)
        return self._send(200, body, ctype, {}, parts.path)

    def _send(self, code, payload, ctype, extra=None, path=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        cut = self.server.cut_after.pop(path, None) if path else None
        self.wfile.write(payload if cut is None else payload[:cut])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.html, srv.cut_after, srv.requests, srv.ranges = {}, set(), {}, [], True
    srv.url = lambda path: f"http://127.0.0.1:{srv.server_address[1]}{path}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private cache (HAIRLIB_HOME) and a way to register temporary entries."""
    monkeypatch.setenv("HAIRLIB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HAIRLIB_OFFLINE", raising=False)

    def register(name, urls, sha256=DATA_SHA, size=len(DATA), filename=None):
        spec = W.WeightSpec(name=name, filename=filename or f"{name}.bin", urls=tuple(urls),
                            sha256=sha256, size=size, description=f"test file {name}",
                            license="test", used_by=("tests",))
        monkeypatch.setitem(W.REGISTRY, name, spec)
        return spec

    register.dir = tmp_path / "home" / "weights"
    return register


def _closed_port_url(path="/x.bin"):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                   # nothing listens there: connection refused
    return f"http://127.0.0.1:{port}{path}"


def _leftovers(directory):
    return sorted(p.name for p in Path(directory).glob("*") if ".part" in p.name)


# --- download and verify ------------------------------------------------------------------------

def test_good_checksum_puts_file_in_place_and_leaves_no_part(server, home):
    server.files["/a.bin"] = DATA
    home("toy", [server.url("/a.bin")])
    path = W.fetch("toy", progress=False)
    assert path == home.dir / "toy.bin" == W.local_path("toy")
    assert path.read_bytes() == DATA
    assert _leftovers(home.dir) == []
    assert W.is_present("toy")
    record = (home.dir / "toy.bin.sha256").read_text().splitlines()
    assert record[0] == f"{DATA_SHA}  toy.bin"
    assert "verified=pinned" in record[1]


def test_bad_checksum_raises_and_keeps_nothing(server, home):
    server.files["/a.bin"] = DATA
    wrong = "0" * 64
    home("toy", [server.url("/a.bin")], sha256=wrong)
    with pytest.raises(W.ChecksumError) as err:
        W.fetch("toy", progress=False)
    assert wrong in str(err.value) and DATA_SHA in str(err.value)
    assert (err.value.expected, err.value.actual) == (wrong, DATA_SHA)
    assert not (home.dir / "toy.bin").exists()
    assert _leftovers(home.dir) == []


def test_wrong_size_is_a_checksum_error(server, home):
    server.files["/a.bin"] = DATA
    home("toy", [server.url("/a.bin")], sha256=None, size=len(DATA) - 1)
    with pytest.raises(W.ChecksumError) as err:
        W.fetch("toy", progress=False)
    assert (err.value.expected, err.value.actual) == (len(DATA) - 1, len(DATA))
    assert list(home.dir.glob("toy.bin*")) == []


def test_interrupted_transfer_resumes_with_a_range_request(server, home):
    server.files["/a.bin"] = DATA
    server.cut_after["/a.bin"] = CUT
    home("toy", [server.url("/a.bin")])
    with pytest.raises(W.WeightsMissingError) as err:
        W.fetch("toy", progress=False)
    assert "partial download kept" in str(err.value)
    part = home.dir / "toy.bin.part"
    assert part.stat().st_size == CUT
    assert not (home.dir / "toy.bin").exists()

    path = W.fetch("toy", progress=False)
    assert path.read_bytes() == DATA
    assert server.requests[-1] == ("/a.bin", f"bytes={CUT}-")
    assert _leftovers(home.dir) == []


def test_server_without_range_support_starts_over(server, home):
    server.files["/a.bin"] = DATA
    server.cut_after["/a.bin"] = CUT
    server.ranges = False
    home("toy", [server.url("/a.bin")])
    with pytest.raises(W.WeightsMissingError):
        W.fetch("toy", progress=False)
    assert W.fetch("toy", progress=False).read_bytes() == DATA
    assert server.requests[-1] == ("/a.bin", f"bytes={CUT}-")   # asked, got a full 200


def test_unpinned_part_does_not_resume_from_another_url(server, home):
    server.files["/a.bin"] = DATA
    server.files["/b.bin"] = DATA
    server.cut_after["/a.bin"] = CUT
    home("toy", [server.url("/a.bin")], sha256=None, size=None)
    with pytest.raises(W.WeightsMissingError):
        W.fetch("toy", progress=False)
    with pytest.warns(W.UnverifiedWeightsWarning):
        W.fetch("toy", progress=False, urls=[server.url("/b.bin")])
    assert server.requests[-1] == ("/b.bin", None)              # fresh start, no Range
    assert (home.dir / "toy.bin").read_bytes() == DATA


def test_next_url_is_tried_when_one_fails(server, home):
    server.files["/a.bin"] = DATA
    server.files["/page.bin"] = b"<html><title>Quota exceeded</title></html>"
    server.html.add("/page.bin")
    home("toy", [_closed_port_url(), server.url("/missing.bin"), server.url("/page.bin"),
                 server.url("/a.bin")])
    assert W.fetch("toy", progress=False).read_bytes() == DATA
    assert [p for p, _ in server.requests] == ["/missing.bin", "/page.bin", "/a.bin"]


def test_google_drive_confirmation_page_is_followed(server, home, monkeypatch):
    server.files["/drive/FILEID"] = DATA
    monkeypatch.setattr(W, "_DRIVE_HOSTS", {"drive.example"})
    monkeypatch.setattr(W, "_DRIVE_DOWNLOAD", server.url("/download"))
    home("toy", ["https://drive.example/file/d/FILEID/view?usp=sharing"])
    assert W.fetch("toy", progress=False).read_bytes() == DATA
    assert [p for p, _ in server.requests] == ["/download", "/download"]


def test_drive_links_are_parsed():
    for url in ("https://drive.google.com/file/d/1AbC-_x/view?usp=sharing",
                "https://drive.google.com/uc?id=1AbC-_x",
                "https://drive.google.com/uc?export=download&id=1AbC-_x",
                "https://drive.google.com/open?id=1AbC-_x"):
        assert W._drive_id(url) == "1AbC-_x"
    assert W._drive_id("https://huggingface.co/x/resolve/main/y.pt?id=3") is None
    direct = urllib.parse.urlsplit(W._drive_download_url("1AbC-_x"))
    assert direct.hostname == "drive.usercontent.google.com"
    assert urllib.parse.parse_qs(direct.query) == {"id": ["1AbC-_x"], "export": ["download"],
                                                   "confirm": ["t"]}


# --- offline and missing ----------------------------------------------------------------------

def test_unreachable_url_explains_how_to_get_the_file(home):
    url = _closed_port_url("/toy.bin")
    home("toy", [url])
    t0 = time.monotonic()
    with pytest.raises(W.WeightsMissingError) as err:
        W.fetch("toy", progress=False)
    assert time.monotonic() - t0 < 5
    msg = str(err.value)
    for needle in ("toy.bin", "hairlib fetch toy", url, str(home.dir / "toy.bin"),
                   "cannot connect"):
        assert needle in msg
    assert isinstance(err.value, FileNotFoundError)
    assert err.value.names == ("toy",)


def test_offline_env_never_touches_the_network(server, home, monkeypatch):
    server.files["/a.bin"] = DATA
    home("toy", [server.url("/a.bin")])
    monkeypatch.setenv("HAIRLIB_OFFLINE", "1")
    with pytest.raises(W.WeightsMissingError) as err:
        W.fetch("toy", progress=False)
    assert "HAIRLIB_OFFLINE" in str(err.value)
    assert server.requests == []


def test_require_lists_every_missing_name_at_once(server, home):
    server.files["/a.bin"] = DATA
    home("one", [server.url("/a.bin")])
    home("two", ["https://example.invalid/two.bin"])
    home("three", ["https://example.invalid/three.bin"])
    W.fetch("one", progress=False)
    with pytest.raises(W.WeightsMissingError) as err:
        W.require("one", "two", "three")
    assert err.value.names == ("two", "three")
    msg = str(err.value)
    assert "hairlib fetch two" in msg and "hairlib fetch three" in msg
    assert "https://example.invalid/three.bin" in msg
    assert "hairlib fetch one" not in msg
    assert server.requests == [("/a.bin", None)]                 # require never downloads


def test_require_returns_paths(server, home):
    server.files["/a.bin"] = DATA
    home("one", [server.url("/a.bin")])
    home("two", [server.url("/a.bin")])
    W.fetch_all(["one", "two"], progress=False)
    assert W.require("one") == home.dir / "one.bin"
    assert W.require("one", "two") == [home.dir / "one.bin", home.dir / "two.bin"]


def test_require_flags_a_file_of_the_wrong_size(home):
    home("toy", ["https://example.invalid/toy.bin"])
    home.dir.mkdir(parents=True)
    (home.dir / "toy.bin").write_bytes(b"short")
    with pytest.raises(W.WeightsMissingError, match="has 5 bytes"):
        W.require("toy")


def test_unknown_name_is_a_key_error_listing_known_names():
    with pytest.raises(KeyError, match="stylegan2-ffhq-1024"):
        W.local_path("no-such-weights")


# --- trust on first use and re-hashing --------------------------------------------------------

def test_unpinned_file_records_its_sha_and_warns_once(server, home):
    server.files["/a.bin"] = DATA
    home("toy", [server.url("/a.bin")], sha256=None, size=None)
    with pytest.warns(W.UnverifiedWeightsWarning, match="could not be verified"):
        path = W.fetch("toy", progress=False)
    record = (home.dir / "toy.bin.sha256").read_text().splitlines()
    assert record[0] == f"{DATA_SHA}  toy.bin" and "verified=first-use" in record[1]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", W.UnverifiedWeightsWarning)
        assert W.fetch("toy", progress=False) == path           # no second warning
    # the recorded hash now guards the file: changed bytes are refused
    path.write_bytes(DATA[::-1])
    with pytest.raises(W.ChecksumError, match="recorded on first use"):
        W.fetch("toy", progress=False)


def test_cached_file_is_rehashed_only_when_its_record_is_stale(server, home, monkeypatch):
    server.files["/a.bin"] = DATA
    home("toy", [server.url("/a.bin")])
    path = W.fetch("toy", progress=False)
    calls = []
    real = W.sha256_file
    monkeypatch.setattr(W, "sha256_file", lambda p: calls.append(p) or real(p))

    W.fetch("toy", progress=False)
    W.require("toy")
    assert calls == []                                          # fresh record: no re-hash

    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    W.fetch("toy", progress=False)
    assert calls == [path]                                      # mtime changed: re-hashed once
    W.fetch("toy", progress=False)
    assert calls == [path]                                      # record refreshed

    W.fetch("toy", progress=False, verify=True)
    assert calls == [path, path]                                # asked for

    st = path.stat()
    path.write_bytes(DATA[:-1] + b"\x00")                       # same size, new content
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    W.fetch("toy", progress=False)                              # size and mtime kept: trusted
    with pytest.raises(W.ChecksumError, match="published sha256"):
        W.fetch("toy", progress=False, verify=True)
    assert path.exists()                                        # a cached file is never deleted


def test_file_placed_by_hand_is_checked_once(home):
    home("toy", ["https://example.invalid/toy.bin"])
    home.dir.mkdir(parents=True)
    (home.dir / "toy.bin").write_bytes(DATA)
    assert W.fetch("toy", progress=False) == home.dir / "toy.bin"   # no network needed
    assert (home.dir / "toy.bin.sha256").read_text().startswith(DATA_SHA)


def test_force_downloads_again(server, home):
    server.files["/a.bin"] = DATA
    home("toy", [server.url("/a.bin")])
    W.fetch("toy", progress=False)
    W.fetch("toy", progress=False, force=True)
    assert len(server.requests) == 2
    assert (home.dir / "toy.bin").read_bytes() == DATA


# --- fetch_all, status, CLI -------------------------------------------------------------------

def test_fetch_all_reports_each_name(server, home):
    server.files["/a.bin"] = DATA
    home("good", [server.url("/a.bin")])
    home("bad", [_closed_port_url()])
    out = W.fetch_all(["good", "bad"], progress=False)
    assert out["good"] == home.dir / "good.bin"
    assert isinstance(out["bad"], W.WeightsMissingError)
    with pytest.raises(KeyError):
        W.fetch_all(["good", "nope"])


def test_status_has_a_row_per_entry(server, home):
    server.files["/a.bin"] = DATA
    home("toy", [server.url("/a.bin")])
    rows = {r["name"]: r for r in W.status()}
    assert set(rows) == set(W.REGISTRY)
    assert rows["toy"]["present"] is False and rows["toy"]["pinned"] is True
    W.fetch("toy", progress=False)
    row = {r["name"]: r for r in W.status()}["toy"]
    assert row["present"] is True and row["path"] == str(home.dir / "toy.bin")
    assert row["size"] == row["size_on_disk"] == len(DATA)
    for key in ("name", "filename", "present", "path", "size", "pinned"):
        assert key in row


def test_main_fetch_exit_codes_and_messages(server, home, capsys):
    server.files["/a.bin"] = DATA
    home("good", [server.url("/a.bin")])
    home("bad", [_closed_port_url()])
    assert W.main_fetch(["good"]) == 0
    assert "good: downloaded" in capsys.readouterr().out
    assert W.main_fetch(["good"]) == 0
    assert "already present" in capsys.readouterr().out
    assert W.main_fetch(["good", "bad"]) == 2
    err = capsys.readouterr().err
    assert "hairlib fetch bad: FAILED" in err and "Traceback" not in err
    assert W.main_fetch(["nope"]) == 2
    assert "unknown name(s): nope" in capsys.readouterr().err
    assert W.main_fetch([]) == 2


def test_cache_dir_default_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv("HAIRLIB_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert W.cache_dir() == tmp_path / ".cache" / "hairlib" / "weights"
    assert not W.cache_dir().exists()                           # created lazily
    monkeypatch.setenv("HAIRLIB_HOME", str(tmp_path / "h"))
    assert W.cache_dir() == tmp_path / "h" / "weights"


# --- the real registry ------------------------------------------------------------------------

REQUIRED = ("stylegan2-ffhq-1024", "stylegan2-ffhq-256", "clip-vit-b32", "e4e-ffhq",
            "arcface-ir-se50", "face-parser", "hairclip")


def test_registry_is_sane():
    assert set(REQUIRED) <= set(W.REGISTRY)
    filenames = [s.filename for s in W.REGISTRY.values()]
    assert len(filenames) == len(set(filenames))                # one cache slot per entry
    for name, s in W.REGISTRY.items():
        assert s.name == name
        assert s.urls and all(u.startswith("https://") for u in s.urls), name
        assert len(set(s.urls)) == len(s.urls), name
        if s.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", s.sha256), name
        assert s.size is None or (isinstance(s.size, int) and s.size > 0), name
        assert s.description and s.license and s.used_by, name
        drive = [i for i, u in enumerate(s.urls) if W._drive_id(u)]
        assert drive == list(range(len(s.urls) - len(drive), len(s.urls))), \
            f"{name}: Google Drive links must come last"
    for name in REQUIRED:
        assert not W.REGISTRY[name].optional


def test_clip_hash_is_the_one_in_its_url():
    spec = W.REGISTRY["clip-vit-b32"]
    assert f"/{spec.sha256}/" in spec.urls[0]


def test_weights_table_matches_registry():
    table = (Path(__file__).resolve().parents[1] / "data" / "weights.md").read_text()
    for name, s in W.REGISTRY.items():
        assert f"`{name}`" in table, name
        if s.sha256:
            assert s.sha256 in table, name
