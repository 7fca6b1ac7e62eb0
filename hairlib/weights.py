"""External checkpoints of the ``ffhq`` world: where they come from, how they are checked,
where they live.

The papers' code (StyleCLIP, HairCLIP, ManiCLIP, e4e) expects its checkpoints in hard-coded
``pretrained_models/`` folders and downloads them, if at all, from Google Drive without any
check. Here every file has one entry in ``REGISTRY`` (a ``WeightSpec``): its file name,
the URLs to try in order (re-hosting mirrors first where the original host is Google Drive,
Drive last), its sha256 and size in bytes where a published value was found, a one-line
description, its licence and the methods that use it. ``data/weights.md`` is the same table
for people, with the sources of every hash.

    import hairlib.weights as W
    W.require("stylegan2-ffhq-1024")        # Path, or WeightsMissingError saying what to do
    W.fetch("stylegan2-ffhq-1024")          # downloads once, verifies, returns the Path
    W.status()                              # one row per entry, for `hairlib info`

Cache. Files live flat in ``cache_dir()``: ``$HAIRLIB_HOME/weights`` or
``~/.cache/hairlib/weights``; nothing is created until a download writes there. A download
goes to ``<file>.part`` (resumed with an HTTP Range request when the server supports it),
is checked, then moved into place with ``os.replace`` (atomic), so a file at its final path
is always complete. Beside each file, ``<file>.sha256`` records the hash that was checked, in
``sha256sum -c`` format, with the file's size and mtime on a comment line.

Trust. A pinned entry (``sha256`` set) must match byte for byte; a mismatch deletes the
``.part`` and raises ``ChecksumError``. An unpinned entry (no published hash was found; see
``data/weights.md``) is trusted on first use: its observed sha256 is recorded and an
``UnverifiedWeightsWarning`` says so; later runs check the file against that record.

Re-hashing a cached file. openai/CLIP re-hashes a cached file on every load; for the 1.2 GB e4e
checkpoint that costs seconds each time. Here a cached file is re-hashed only when its size or
mtime differ from its ``.sha256`` record, when there is no record yet (a file placed by hand),
or when asked (``fetch(name, verify=True)``). Corruption that keeps size and mtime is not
caught without ``verify=True``.

Network. Only ``urllib`` (no ``requests``). Each connection has a ``TIMEOUT_S`` socket timeout,
so without a network ``fetch`` fails within seconds; ``HAIRLIB_OFFLINE=1`` skips the network
altogether. Google Drive links are rewritten to ``drive.usercontent.google.com/download?...
&confirm=t``, and Drive's "cannot scan this file for viruses" page is answered by following
its confirmation form. Every failure ends in ``WeightsMissingError`` (a ``FileNotFoundError``)
whose message names the file, its expected path, the ``hairlib fetch NAME`` command and the
URLs for downloading by hand.

Not handled: two processes downloading the same file at the same moment (they would share the
``.part``); run one ``hairlib fetch`` at a time.
"""
from __future__ import annotations

import hashlib
import html.parser
import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

from hairlib._version import __version__
from .atomic import sha256_file, write_text

__all__ = [
    "WeightSpec",
    "REGISTRY",
    "WeightsMissingError",
    "ChecksumError",
    "UnverifiedWeightsWarning",
    "cache_dir",
    "local_path",
    "is_present",
    "require",
    "fetch",
    "fetch_all",
    "status",
    "sha256_file",
    "main_fetch",
]

ENV_HOME = "HAIRLIB_HOME"          # cache root; weights go to $HAIRLIB_HOME/weights
ENV_OFFLINE = "HAIRLIB_OFFLINE"    # "1" (or true/yes/on): never touch the network
TIMEOUT_S = 10.0                   # socket timeout per connection attempt and per read
CHUNK = 1 << 20                    # bytes per read while downloading and hashing
_USER_AGENT = f"hairlib/{__version__} (python-urllib)"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WeightSpec:
    """One external checkpoint.

    ``urls`` are tried in order. ``sha256`` and ``size`` are the published values (a Hugging
    Face LFS pointer, the CLIP download path, ...) or None where none was found; never a
    guess. ``optional`` entries are extras that ``fetch_all()`` / ``hairlib fetch all`` skip.
    """

    name: str                        # registry key, e.g. "stylegan2-ffhq-1024"
    filename: str                    # file name in the cache directory
    urls: tuple                      # tuple[str, ...], tried in order
    sha256: Optional[str]            # lowercase hex, or None when no published hash exists
    size: Optional[int]              # bytes, or None when unknown
    description: str                 # one line
    license: str                     # licence of the weights (and what it inherits)
    used_by: tuple                   # tuple[str, ...]: methods that load it
    optional: bool = False           # extras: not part of `hairlib fetch all`

    def __post_init__(self):
        if isinstance(self.urls, (list, str)):
            object.__setattr__(self, "urls", tuple([self.urls] if isinstance(self.urls, str)
                                                   else self.urls))
        if isinstance(self.used_by, (list, str)):
            object.__setattr__(self, "used_by", tuple([self.used_by] if isinstance(self.used_by, str)
                                                      else self.used_by))
        if not self.urls:
            raise ValueError(f"WeightSpec {self.name!r}: no urls")
        if self.sha256 is not None and not _HEX64.match(self.sha256):
            raise ValueError(f"WeightSpec {self.name!r}: sha256 must be 64 lowercase hex digits")
        if self.size is not None and (not isinstance(self.size, int) or self.size <= 0):
            raise ValueError(f"WeightSpec {self.name!r}: size must be a positive int or None")
        if "/" in self.filename or "\\" in self.filename or self.filename in ("", ".", ".."):
            raise ValueError(f"WeightSpec {self.name!r}: filename must be a plain file name")

    @property
    def pinned(self) -> bool:
        """True when a published sha256 is known, so the download is verified."""
        return self.sha256 is not None


def _hf(repo: str, revision: str, path: str) -> str:
    """Hugging Face download URL of ``path`` at ``revision`` in a model repo (``repo``),
    a Space (``spaces/owner/name``) or a dataset (``datasets/owner/name``)."""
    return f"https://huggingface.co/{repo}/resolve/{revision}/{urllib.parse.quote(path)}"


def _gdrive(file_id: str) -> str:
    """The Google Drive page of a file (what the papers' READMEs link); ``fetch`` rewrites it
    into a direct download."""
    return f"https://drive.google.com/file/d/{file_id}/view"


_NVIDIA_NC = "Nvidia Source Code License-NC (non-commercial): converted from NVlabs/stylegan2"
_STYLECLIP_MAPPERS = {
    # name suffix: (file in StyleCLIP's mapper/pretrained/, Drive id from StyleCLIP utils.py)
    "afro": ("afro.pt", "1i5vAqo4z0I-Yon3FNft_YZOq7ClWayQJ"),
    "bobcut": ("bobcut.pt", "1IvyqjZzKS-vNdq_OhwapAcwrxgLAY8UF"),
    "bowlcut": ("bowlcut.pt", "1xwdxI2YCewSt05dEHgkpmmzoauPjEnnZ"),
    "curly-hair": ("curly_hair.pt", "1xZ7fFB12Ci6rUbUfaHPpo44xUFzpWQ6M"),
    "mohawk": ("mohawk.pt", "1oMMPc8iQZ7dhyWavZ7VNWLwzf9aX4C09"),
    "purple-hair": ("purple_hair.pt", "14H0CGXWxePrrKIYmZnDD2Ccs65EEww75"),
}


def _build_registry() -> Dict[str, WeightSpec]:
    specs = [
        WeightSpec(
            name="stylegan2-ffhq-1024",
            filename="stylegan2-ffhq-config-f.pt",
            urls=(
                _hf("akhaliq/OneshotCLIP-stylegan2-ffhq", "024390a9508cb2d124dfaa8ec1caee3ad1a9da59",
                    "stylegan2-ffhq-config-f.pt"),
                _hf("spaces/ethanNeuralImage/inversion_testing",
                    "2448e446032e40d1dfbc57aaa86b379ae5e871ae",
                    "pretrained_models/stylegan2-ffhq-config-f.pt"),
                _gdrive("1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT"),   # StyleCLIP utils.py, e4e README
                _gdrive("1pts5tkfAcWrg4TpLDu6ILF5wHID32Nzm"),   # HairCLIP README
            ),
            sha256="bae494ef77e32a9cd1792a81a3c167692a0e64f6bcd8b06592ff42917e2ed46e",
            size=381462551,
            description="StyleGAN2 config-f FFHQ 1024 px in rosinality's layout (g_ema, g, d, "
                        "latent_avg); 18 W+ layers",
            license=_NVIDIA_NC + " by rosinality",
            used_by=("StyleCLIP", "HairCLIP", "e4e"),
        ),
        WeightSpec(
            name="stylegan2-ffhq-256",
            filename="ffhq_256.pt",
            urls=(
                _gdrive("1PQutd-JboOCOZqmd95XWxWrO8gGEvRcO"),   # rosinality README: 550000.pt
            ),
            sha256=None,
            size=None,
            description="StyleGAN2 FFHQ 256 px trained by rosinality (550k iterations, "
                        "`550000.pt`); ManiCLIP loads it as pretrained/ffhq_256.pt "
                        "(Generator(256, 512, 8), key g_ema); 14 W+ layers",
            license="no licence stated for the weights (rosinality/stylegan2-pytorch code is "
                    "MIT); trained on FFHQ (CC BY-NC-SA 4.0)",
            used_by=("ManiCLIP",),
        ),
        WeightSpec(
            name="clip-vit-b32",
            filename="ViT-B-32.pt",
            urls=(
                "https://openaipublic.azureedge.net/clip/models/"
                "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
                _hf("Balajim57/zero-shot-vitb32", "4c756da4189740a72d8eb7fbfc74084982c28382",
                    "ViT-B-32.pt"),
                _hf("datasets/fuyun1107/clip-for-vlp", "a3963bff1f3f51b1520f29e8fe6cf9cf9f334f1f",
                    "ViT-B-32.pt"),
            ),
            sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
            size=353976522,
            description="OpenAI CLIP ViT-B/32 (TorchScript archive, as openai/clip downloads it)",
            license="MIT (openai/CLIP)",
            used_by=("StyleCLIP", "HairCLIP", "ManiCLIP"),
        ),
        WeightSpec(
            name="e4e-ffhq",
            filename="e4e_ffhq_encode.pt",
            urls=(
                _hf("public-data/e4e", "fdd18714fc6b639487adbd901f16f67eb24ba786",
                    "e4e_ffhq_encode.pt"),
                _hf("wmpscc/StyleGene", "e301280ac9a63ba7ebb4be3311128bb6c9cb9ae2",
                    "e4e_ffhq_encode.pt"),
                _gdrive("1cUv_reLE6k3604or78EranS7XzuVMWeO"),   # encoder4editing README
            ),
            sha256="2ace1d9a8c05c10a399bcd500b8dda118f759ff1aac89dbdab7435f2136a0999",
            size=1201649680,
            description="e4e encoder for FFHQ: aligned 256 px photo -> W+ (18 x 512); the "
                        "checkpoint also holds the 1024 px decoder, latent_avg and opts",
            license="MIT (omertov/encoder4editing); its decoder weights: " + _NVIDIA_NC,
            used_by=("StyleCLIP", "HairCLIP", "e4e"),
        ),
        WeightSpec(
            name="arcface-ir-se50",
            filename="model_ir_se50.pth",
            urls=(
                _hf("lithiumice/ArcFace_PyTorch", "086811ee76897fdfd94335ea4ff40ae074136022",
                    "InsightFace_Pytorch+model_ir_se50.pth"),
                _hf("spaces/adirik/stylemc-demo", "74880fc98f769a37b6227fb75bd0362b0ddff595",
                    "pretrained/model_ir_se50.pth"),
                _hf("spaces/ethanNeuralImage/inversion_testing",
                    "2448e446032e40d1dfbc57aaa86b379ae5e871ae",
                    "pretrained_models/model_ir_se50.pth"),
                _gdrive("1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn"),   # StyleCLIP and e4e READMEs
                _gdrive("1FS2V756j-4kWduGxfir55cMni5mZvBTv"),   # HairCLIP README
            ),
            sha256="a035c768259b98ab1ce0e646312f48b9e1e218197a0f80ac6765e88f8b6ddf28",
            size=175367323,
            description="ArcFace IR-SE50 (TreB1eN/InsightFace_Pytorch) for the identity loss "
                        "and ID metrics: 112 px face -> 512-d embedding",
            license="MIT (TreB1eN/InsightFace_Pytorch)",
            used_by=("StyleCLIP", "HairCLIP", "ManiCLIP", "e4e"),
        ),
        WeightSpec(
            name="face-parser",
            filename="parsenet.pth",
            urls=(
                # HairCLIP keeps the file in git (pretrained_models/parsenet.pth, not LFS).
                "https://raw.githubusercontent.com/wty-ustc/HairCLIP/"
                "df2e28a2ca7111966122a1c8187db30a90a286c2/pretrained_models/parsenet.pth",
                _hf("spaces/ethanNeuralImage/inversion_testing",
                    "2448e446032e40d1dfbc57aaa86b379ae5e871ae", "pretrained_models/parsenet.pth"),
            ),
            sha256="7914f1dccb37ab2f307703f2593efd74cc327d9db974424dff8d7510b46d85b5",
            size=7813380,
            description="HairCLIP's face parser (its `unet()` in criteria/parse_related_loss): "
                        "hair / background masks for the background and colour losses",
            license="LGPL-2.1 (wty-ustc/HairCLIP)",
            used_by=("HairCLIP",),
        ),
        WeightSpec(
            name="hairclip",
            filename="hairclip.pt",
            urls=(
                _hf("public-data/HairCLIP", "606d5757dcd7770bfa082eca58219e917d7b6b9f",
                    "hairclip.pt"),
                _gdrive("1hqZT6ZMldhX3M_x378Sm4Z2HMYr-UwQ4"),   # HairCLIP README
            ),
            sha256="434a439b71cf41b4aa454bb96aa6572d181c60844e6efadfcddf0cc1e09fdf48",
            size=None,
            description="HairCLIP's trained mapper (keys mapper.* incl. the frozen fp16 CLIP "
                        "as mapper.clip_model.*, plus decoder.*)",
            license="LGPL-2.1 (wty-ustc/HairCLIP); its decoder weights: " + _NVIDIA_NC,
            used_by=("HairCLIP",),
        ),
        WeightSpec(
            name="face-parser-bisenet",
            filename="79999_iter.pth",
            urls=(
                _hf("AIRI-Institute/HairFastGAN", "main",
                    "pretrained_models/BiSeNet/face_parsing_79999_iter.pth"),
                _hf("waveydaveygravy/swap-mukham", "2d866362d6f11df19b46925c9b5d955979830d16",
                    "79999_iter.pth"),
                _hf("spaces/ethanNeuralImage/inversion_testing",
                    "2448e446032e40d1dfbc57aaa86b379ae5e871ae", "pretrained_models/79999_iter.pth"),
                _gdrive("154JgKpzCPW82qINcVieuPH3fZ2e0P812"),   # zllrunning/face-parsing.PyTorch
            ),
            sha256="468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567",
            size=53289463,
            description="BiSeNet face parser, 19 CelebAMask-HQ classes (zllrunning/"
                        "face-parsing.PyTorch); ManiCLIP builds BiSeNet(n_classes=19) from its "
                        "own copy, external/parsing/models/bisenet.pth (identity not checked)",
            license="no licence file in zllrunning/face-parsing.PyTorch; trained on "
                    "CelebAMask-HQ (non-commercial research only)",
            used_by=("ManiCLIP",),
            optional=True,
        ),
    ]
    for suffix, (fname, drive_id) in _STYLECLIP_MAPPERS.items():
        specs.append(WeightSpec(
            name=f"styleclip-mapper-{suffix}",
            filename=f"styleclip-mapper-{fname}",
            urls=(_gdrive(drive_id),),
            sha256=None,
            size=None,
            description=f"StyleCLIP's pretrained latent mapper `{fname}` (mapper/pretrained/ in "
                        "orpatashnik/StyleCLIP)",
            license="MIT (orpatashnik/StyleCLIP)",
            used_by=("StyleCLIP",),
            optional=True,
        ))
    registry = {}
    for s in specs:
        if s.name in registry:
            raise ValueError(f"duplicate registry name {s.name!r}")
        registry[s.name] = s
    return registry


REGISTRY: Dict[str, WeightSpec] = _build_registry()


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

class WeightsMissingError(FileNotFoundError):
    """Weights are not in the cache (and could not be downloaded, when a download was tried).

    The message says, for every missing file, where it is expected, the ``hairlib fetch NAME``
    command and the URLs for downloading it by hand. ``names`` and ``paths`` list them.
    """

    def __init__(self, message: str, names: Sequence[str] = (), paths: Sequence[Path] = ()):
        super().__init__(message)
        self.names = tuple(names)
        self.paths = tuple(paths)

    def __str__(self) -> str:
        return self.args[0]


class ChecksumError(RuntimeError):
    """A file's sha256 (or size) is not the expected one. ``expected`` and ``actual`` hold the
    two values (hex digests, or sizes in bytes when the size alone decided)."""

    def __init__(self, message: str, name: str = "", expected=None, actual=None,
                 path: Optional[Path] = None):
        super().__init__(message)
        self.name = name
        self.expected = expected
        self.actual = actual
        self.path = path


class UnverifiedWeightsWarning(UserWarning):
    """A file with no published sha256 was accepted on first use (its hash is now recorded)."""


class _TransferError(OSError):
    """A download that did not deliver the file (cut short, an HTML page, a Drive refusal)."""


# --------------------------------------------------------------------------------------------
# Paths and hashes
# --------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$HAIRLIB_HOME/weights``, or ``~/.cache/hairlib/weights``. Not created here: the first
    download creates it."""
    root = os.environ.get(ENV_HOME)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "hairlib"
    return base / "weights"


def _spec(name: str) -> WeightSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"unknown weights {name!r}; known names: {known}") from None


def local_path(name: str) -> Path:
    """Where the file of registry entry ``name`` lives, or would live once fetched."""
    return cache_dir() / _spec(name).filename


def _part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _source_path(path: Path) -> Path:
    """Beside a ``.part``: the URL it came from (an unpinned file resumes only from it)."""
    return path.with_name(path.name + ".part.src")


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def is_present(name: str) -> bool:
    """The file is in the cache (with the published size, when one is known). Does not hash."""
    spec = _spec(name)
    path = local_path(name)
    if not path.is_file():
        return False
    return spec.size is None or path.stat().st_size == spec.size


def _write_record(path: Path, digest: str, verified: str) -> None:
    """Write ``<file>.sha256`` (``sha256sum -c`` format; size and mtime on a comment line)."""
    st = path.stat()
    text = (f"{digest}  {path.name}\n"
            f"# size={st.st_size} mtime_ns={st.st_mtime_ns} verified={verified}\n")
    write_text(_record_path(path), text)


def _read_record(path: Path) -> Optional[dict]:
    """``{"sha256", "size", "mtime_ns", "verified"}`` from ``<file>.sha256``, or None."""
    try:
        lines = _record_path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    if not lines or not _HEX64.match(lines[0][:64]):
        return None
    rec = {"sha256": lines[0][:64], "size": None, "mtime_ns": None, "verified": None}
    for line in lines[1:]:
        for key, _, value in (kv.partition("=") for kv in line.lstrip("# ").split()):
            if key in ("size", "mtime_ns") and value.isdigit():
                rec[key] = int(value)
            elif key == "verified":
                rec[key] = value
    return rec


def _check_cached(spec: WeightSpec, path: Path, *, verify: bool = False) -> None:
    """Accept a file already at its final path, hashing it only when needed (module doc)."""
    st = path.stat()
    if spec.size is not None and st.st_size != spec.size:
        raise ChecksumError(
            f"{path} has {st.st_size} bytes, expected {spec.size} for {spec.name!r}. "
            f"Delete it and run `hairlib fetch {spec.name}` (or fetch(..., force=True)).",
            spec.name, spec.size, st.st_size, path)
    rec = _read_record(path)
    fresh = (rec is not None and rec["size"] == st.st_size and rec["mtime_ns"] == st.st_mtime_ns
             and (spec.sha256 is None or rec["sha256"] == spec.sha256))
    if fresh and not verify:
        return
    actual = sha256_file(path)
    expected = spec.sha256 or (rec["sha256"] if rec else None)
    if expected is not None and actual != expected:
        what = "published" if spec.pinned else "recorded on first use"
        raise ChecksumError(
            f"{path} does not match the {what} sha256 of {spec.name!r}: expected {expected}, "
            f"got {actual}. Delete it and run `hairlib fetch {spec.name}`"
            + ("" if spec.pinned else f" (or delete {_record_path(path).name} to accept it)")
            + ".", spec.name, expected, actual, path)
    _write_record(path, actual, "pinned" if spec.pinned else "first-use")
    if expected is None:
        _warn_unverified(spec, path, actual)


def _warn_unverified(spec: WeightSpec, path: Path, digest: str) -> None:
    warnings.warn(
        f"{spec.filename} ({spec.name}) could not be verified: no published sha256 is known. "
        f"Its observed sha256 {digest} is recorded in {_record_path(path)} and later runs "
        f"check the file against it.", UnverifiedWeightsWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------

def _human_size(n: Optional[int]) -> str:
    if n is None:
        return "size unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _missing_message(specs: Sequence[WeightSpec], notes: Optional[Dict[str, List[str]]] = None,
                     headline: Optional[str] = None) -> str:
    notes = notes or {}
    names = ", ".join(s.name for s in specs)
    lines = [headline or f"Missing model weights: {names}."]
    for s in specs:
        path = cache_dir() / s.filename
        lines.append(f"  {s.name}: {s.filename} ({_human_size(s.size)}) - {s.description}")
        lines.append(f"    expected at: {path}")
        lines.extend(f"    {note}" for note in notes.get(s.name, []))
        lines.append(f"    download it: hairlib fetch {s.name}")
        lines.append("    or by hand from one of these URLs, saved under the path above:")
        lines.extend(f"      {u}" for u in s.urls)
    if len(specs) > 1:
        lines.append(f"  All at once: hairlib fetch {' '.join(s.name for s in specs)}")
    lines.append(f"  (Set {ENV_HOME} to move the cache; it is {cache_dir()} now.)")
    return "\n".join(lines)


def _missing_error(specs: Sequence[WeightSpec], notes=None, headline=None) -> WeightsMissingError:
    return WeightsMissingError(_missing_message(specs, notes, headline),
                               [s.name for s in specs], [cache_dir() / s.filename for s in specs])


# --------------------------------------------------------------------------------------------
# require / status
# --------------------------------------------------------------------------------------------

def require(*names: str) -> Union[Path, List[Path]]:
    """Paths of files that must already be in the cache; never downloads.

    One name gives a Path, several give a list. Raises ONE ``WeightsMissingError`` listing
    every missing name, and ``ChecksumError`` if a cached file fails its check.
    """
    specs = [_spec(n) for n in names]
    missing, notes = [], {}
    for s in specs:
        path = cache_dir() / s.filename
        if not path.is_file():
            missing.append(s)
        elif s.size is not None and path.stat().st_size != s.size:
            missing.append(s)
            notes[s.name] = [f"a file is there but has {path.stat().st_size} bytes, not "
                             f"{s.size}: delete it first"]
    if missing:
        raise _missing_error(missing, notes)
    paths = [cache_dir() / s.filename for s in specs]
    for s, p in zip(specs, paths):
        _check_cached(s, p)
    return paths[0] if len(paths) == 1 else paths


def status() -> List[dict]:
    """One row per registry entry (for ``hairlib info``): name, filename, present, path,
    size (expected bytes or None), size_on_disk, pinned, optional, used_by."""
    rows = []
    for name, s in REGISTRY.items():
        path = cache_dir() / s.filename
        on_disk = path.stat().st_size if path.is_file() else None
        rows.append({
            "name": name,
            "filename": s.filename,
            "present": is_present(name),
            "path": str(path),
            "size": s.size,
            "size_on_disk": on_disk,
            "pinned": s.pinned,
            "optional": s.optional,
            "used_by": ", ".join(s.used_by),
        })
    return rows


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

_DRIVE_HOSTS = {"drive.google.com", "docs.google.com"}
_DRIVE_DOWNLOAD = "https://drive.usercontent.google.com/download"


def _drive_id(url: str) -> Optional[str]:
    """The file id of a Google Drive link (``/file/d/ID/...``, ``uc?id=ID``, ``open?id=ID``),
    or None for other URLs."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname not in _DRIVE_HOSTS:
        return None
    m = re.search(r"/file/d/([A-Za-z0-9_-]+)", parts.path)
    if m:
        return m.group(1)
    ids = urllib.parse.parse_qs(parts.query).get("id")
    return ids[0] if ids else None


def _drive_download_url(file_id: str) -> str:
    """The direct-download form that skips Drive's virus-scan page for large files."""
    query = urllib.parse.urlencode({"id": file_id, "export": "download", "confirm": "t"})
    return f"{_DRIVE_DOWNLOAD}?{query}"


class _FormParser(html.parser.HTMLParser):
    """Collects the first <form>'s action and its hidden inputs (Drive's confirmation page)."""

    def __init__(self):
        super().__init__()
        self.action: Optional[str] = None
        self.fields: Dict[str, str] = {}
        self._in_form = False
        self._done = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and not self._done:
            self.action, self._in_form = a.get("action"), True
        elif tag == "input" and self._in_form and a.get("type") == "hidden" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form" and self._in_form:
            self._in_form, self._done = False, True


def _confirm_url(page: str, base_url: str) -> Optional[str]:
    """The URL behind the download button of a Drive confirmation page, or None."""
    parser = _FormParser()
    parser.feed(page)
    if not parser.action or not parser.fields:
        return None
    action = urllib.parse.urljoin(base_url, parser.action)   # the parser unescaped it
    return f"{action}?{urllib.parse.urlencode(parser.fields)}"


def _page_title(page: str) -> str:
    m = re.search(r"<title>(.*?)</title>", page, re.I | re.S)
    return " ".join(html.unescape(m.group(1)).split()) if m else "an HTML page"


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _open_file_response(url: str, start: int, timeout: float):
    """Open ``url`` (Drive links rewritten) and return a response that streams the file.

    A text/html answer is never the file: on Drive we follow its confirmation form once,
    elsewhere (or when Drive still answers with a page: quota exceeded, not shared) the URL
    fails with ``_TransferError``.
    """
    drive_id = _drive_id(url)
    target = _drive_download_url(drive_id) if drive_id else url
    for attempt in range(2):
        resp = _open(target, start, timeout)
        ctype = resp.headers.get("Content-Type", "")
        if not ctype.lower().startswith("text/html"):
            return resp
        with resp:
            page = resp.read(1 << 20).decode("utf-8", "replace")
        follow = _confirm_url(page, resp.geturl()) if (drive_id and attempt == 0) else None
        if follow is None:
            raise _TransferError(f"the server answered with {_page_title(page)!r} "
                                 f"(an HTML page, not the file)")
        target = follow
    raise _TransferError("Google Drive kept answering with a confirmation page")


def _hash_prefix(path: Path, hasher) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            hasher.update(chunk)


def _content_range_start(value: Optional[str]) -> Optional[int]:
    m = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(m.group(1)) if m else None


def _transfer(url: str, dest: Path, spec: WeightSpec, *, progress: bool, timeout: float) -> str:
    """Download ``url`` into ``dest``'s ``.part``, resuming it when allowed (a pinned file from
    any URL, an unpinned one only from the URL it started from); return the sha256 of the
    complete ``.part``. Network trouble raises OSError / HTTPException and keeps the ``.part``."""
    part, src = _part_path(dest), _source_path(dest)
    start = part.stat().st_size if part.is_file() else 0
    if start:
        same_source = src.is_file() and src.read_text(encoding="utf-8").strip() == url
        too_long = spec.size is not None and start > spec.size
        if too_long or not (spec.pinned or same_source):
            part.unlink()
            start = 0
    hasher = hashlib.sha256()
    if start and spec.size is not None and start == spec.size:
        _hash_prefix(part, hasher)                       # finished earlier, never verified
        return hasher.hexdigest()
    try:
        resp = _open_file_response(url, start, timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not start:
            raise
        part.unlink()                                    # our .part does not fit this server
        start = 0
        resp = _open_file_response(url, 0, timeout)
    from tqdm.auto import tqdm

    with resp:
        if resp.status == 206:
            got = _content_range_start(resp.headers.get("Content-Range"))
            if not start or got != start:
                raise _TransferError(f"asked for bytes from {start}, the server sent a range "
                                     f"starting at {got}")
            _hash_prefix(part, hasher)
            mode = "ab"
        else:
            start, mode = 0, "wb"                        # no Range support: start over
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        total = start + length if length is not None else spec.size
        src.write_text(url + "\n", encoding="utf-8")
        received = 0
        with open(part, mode) as f, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=spec.filename,
                                         disable=not progress, leave=False) as bar:
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    done = start + received
    expected_end = start + length if length is not None else spec.size
    if expected_end is not None and done < expected_end:
        raise _TransferError(f"connection closed after {done} of {expected_end} bytes "
                             f"(the .part is kept; fetch again to resume)")
    return hasher.hexdigest()


# --------------------------------------------------------------------------------------------
# fetch
# --------------------------------------------------------------------------------------------

def _offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect ({exc.reason})"
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, _TransferError) else str(exc)


def _discard(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def fetch(name: str, *, force: bool = False, progress: bool = True,
          urls: Optional[Iterable[str]] = None, verify: bool = False) -> Path:
    """Make sure the file of ``name`` is in the cache; download it if missing. Returns its Path.

    force: download again even if the file is there (a stale ``.part`` is discarded).
    progress: show a tqdm progress bar (stderr).
    urls: try these instead of the registry's URLs (same checks apply).
    verify: re-hash a cached file even when its ``.sha256`` record is fresh.

    The URLs are tried in order. A transfer cut short keeps its ``.part`` for the next call
    to resume. A file whose size or sha256 is wrong is deleted, the next URL is tried, and if
    none delivers the right bytes ``ChecksumError`` names expected and actual values.
    Otherwise failure is ``WeightsMissingError`` with instructions for downloading by hand.
    """
    spec = _spec(name)
    dest = local_path(name)
    if dest.is_file() and not force:
        _check_cached(spec, dest, verify=verify)
        return dest
    part = _part_path(dest)
    if _offline():
        raise _missing_error([spec], {name: [f"{ENV_OFFLINE} is set: the network was not tried"]},
                             headline=f"Cannot download {spec.filename} ({name}): offline.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if force:
        _discard(part, _source_path(dest))
    failures: List[str] = []
    bad_bytes: List[ChecksumError] = []
    for url in (tuple(urls) if urls is not None else spec.urls):
        try:
            digest = _transfer(url, dest, spec, progress=progress, timeout=TIMEOUT_S)
        except (OSError, http.client.HTTPException) as e:
            failures.append(f"{url}: {_describe(e)}")
            continue
        size = part.stat().st_size
        wrong = None
        if spec.size is not None and size != spec.size:
            wrong = ChecksumError(
                f"{spec.filename} from {url} has {size} bytes, expected {spec.size}",
                name, spec.size, size, dest)
        elif spec.sha256 is not None and digest != spec.sha256:
            wrong = ChecksumError(
                f"{spec.filename} from {url} has sha256 {digest}, expected {spec.sha256}",
                name, spec.sha256, digest, dest)
        if wrong is not None:
            _discard(part, _source_path(dest))
            bad_bytes.append(wrong)
            failures.append(f"{url}: {wrong}")
            continue
        _discard(_record_path(dest))
        os.replace(part, dest)
        _discard(_source_path(dest))
        _write_record(dest, digest, "pinned" if spec.pinned else "first-use")
        if not spec.pinned:
            _warn_unverified(spec, dest, digest)
        return dest
    if bad_bytes:
        first = bad_bytes[0]
        raise ChecksumError(
            f"Checksum mismatch for {spec.filename} ({name}); nothing was kept.\n"
            + "\n".join(f"  {f}" for f in failures)
            + f"\nExpected {first.expected}, got {first.actual}. The mirror may hold another "
            f"version of the file; report it, or download by hand from the URLs in "
            f"data/weights.md.", name, first.expected, first.actual, dest)
    kept = (f"partial download kept: {part} ({part.stat().st_size} bytes); "
            f"fetch again to resume") if part.is_file() else None
    notes = ["download failed:"] + [f"  {f}" for f in failures] + ([kept] if kept else [])
    raise _missing_error([spec], {name: notes},
                         headline=f"Could not download {spec.filename} ({name}).")


def fetch_all(names: Optional[Iterable[str]] = None, **kw) -> Dict[str, Union[Path, Exception]]:
    """``fetch`` each name (default: every non-optional entry); returns name -> Path, or the
    exception (WeightsMissingError, ChecksumError, OSError) that stopped it. Unknown names
    raise KeyError before anything is downloaded."""
    todo = [n for n, s in REGISTRY.items() if not s.optional] if names is None else list(names)
    for n in todo:
        _spec(n)
    out: Dict[str, Union[Path, Exception]] = {}
    for n in todo:
        try:
            out[n] = fetch(n, **kw)
        except (WeightsMissingError, ChecksumError, OSError) as e:
            out[n] = e
    return out


# --------------------------------------------------------------------------------------------
# CLI entry (`hairlib fetch NAME|all`)
# --------------------------------------------------------------------------------------------

def _usage() -> str:
    rows = [f"  {n:<28} {s.filename:<34} {_human_size(s.size):>10}"
            f"{'  (extra)' if s.optional else ''}" for n, s in REGISTRY.items()]
    return ("usage: hairlib fetch NAME [NAME ...] | all\n"
            "`all` fetches every entry not marked (extra). Known names:\n" + "\n".join(rows))


def main_fetch(argv_names: List[str]) -> int:
    """``hairlib fetch NAME|all``: download, verify and report. 0 on success, 2 on failure
    (one paragraph per failure on stderr, no traceback)."""
    if not argv_names:
        print(_usage(), file=sys.stderr)
        return 2
    names: List[str] = []
    for n in argv_names:
        expanded = [k for k, s in REGISTRY.items() if not s.optional] if n == "all" else [n]
        names.extend(k for k in expanded if k not in names)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        print(f"hairlib fetch: unknown name(s): {', '.join(unknown)}.\n{_usage()}",
              file=sys.stderr)
        return 2
    failed = 0
    for n in names:
        was_there = is_present(n)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UnverifiedWeightsWarning)
                path = fetch(n, progress=True)
        except KeyboardInterrupt:
            print(f"\nhairlib fetch: interrupted during {n}; a partial download is kept and "
                  f"the next `hairlib fetch {n}` resumes it.", file=sys.stderr)
            return 2
        except (WeightsMissingError, ChecksumError, OSError) as e:
            failed += 1
            print(f"hairlib fetch {n}: FAILED\n{e}\n", file=sys.stderr)
            continue
        for w in caught:
            print(f"note: {w.message}", file=sys.stderr)
        pin = "sha256 verified" if REGISTRY[n].pinned else "unverified (no published sha256)"
        print(f"{n}: {'already present' if was_there else 'downloaded'}, {pin}: {path}")
    if failed:
        print(f"hairlib fetch: {failed} of {len(names)} failed.", file=sys.stderr)
        return 2
    return 0
