"""Checks for what admins type into the LoRA registry: names, paths, trigger words.

The bot never downloads a LoRA; fal does. These checks keep the registry to URLs fal can fetch
and refuse anything that points back at private infrastructure or carries credentials.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import urlsplit

from jobs.errors import BadRequest

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
HF_REPO_RE = re.compile(
    r"^(?P<owner>[A-Za-z0-9][A-Za-z0-9._-]{0,95})/(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]{0,95})"
    r"(?P<file>/[A-Za-z0-9._/-]+\.safetensors)?$"
)
PATH_MAX = 500
DESCRIPTION_MAX = 300
TRIGGER_MAX = 10
TRIGGER_LEN_MAX = 60
SCALE_MIN, SCALE_MAX = 0.0, 4.0
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069\u200e\u200f]")  # zero-width joiners stay: emoji
_BLOCKED_HOSTS = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
# Dot-separated labels of letters, digits, - and _ (an optional final dot), or an IPv6 literal.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_HOST_RE = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\.?|[0-9a-f:.]+(?:%[\w.-]+)?")


def _has_invisible(text: str) -> bool:
    return any(unicodedata.category(ch) in {"Cf", "Cc", "Zl", "Zp"} for ch in text)


def check_name(name: str) -> str:
    if _has_invisible(name):
        raise BadRequest(
            "LoRA names can't contain invisible or direction-changing characters. "
            "Use letters, digits, - and _."
        )
    name = name.strip()
    if not NAME_RE.fullmatch(name):
        raise BadRequest(
            f"`{name[:40]}` isn't a valid LoRA name: use 1–32 characters of letters (A–Z), "
            "digits, - and _."
        )
    return name


def _private_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host in _BLOCKED_HOSTS or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # Integer or hex IP spellings (2130706433, 0x7f.1): no legitimate host looks like this.
        return re.fullmatch(r"(0x[0-9a-f]+|\d+)(\.(0x[0-9a-f]+|\d+)){0,3}", host) is not None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # Not globally routable covers shared (100.64/10), documentation and benchmark ranges too.
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def _resolver_host(host: str) -> str:
    """The host as resolvers read it: Unicode look-alikes folded (①②⑦ → 127, ⓛ → l), IDNA."""
    folded = unicodedata.normalize("NFKC", host).lower()
    try:
        ascii_host = folded.encode("idna").decode("ascii")
    except UnicodeError:
        raise BadRequest("The LoRA URL's host isn't a valid host name.") from None
    if not _HOST_RE.fullmatch(ascii_host):
        raise BadRequest("The LoRA URL's host isn't a valid host name.")
    return ascii_host


def check_path(path: str) -> str:
    """An https URL of a .safetensors file, or a Hugging Face repo id (optionally a file in it)."""
    path = path.strip()
    if not path:
        raise BadRequest("The LoRA path is empty.")
    if len(path) > PATH_MAX:
        raise BadRequest(f"The LoRA path is {len(path)} characters; the limit is {PATH_MAX}.")
    if _has_invisible(path) or any(ch.isspace() for ch in path):
        raise BadRequest("The LoRA path can't contain spaces or invisible characters.")
    lowered = path.lower()
    if re.match(r"^[a-z]:[\\/]", lowered):
        raise BadRequest(
            "Local file paths aren't allowed: fal can't read this machine's disk. "
            "Use an https URL or a Hugging Face repo id."
        )
    if "://" not in path and ":" in path.split("/")[0]:
        scheme = lowered.split(":", 1)[0]
        raise BadRequest(
            f"`{scheme}:` paths aren't allowed; use an https URL or a Hugging Face repo id."
        )
    if "://" in path:
        return _check_url(path)
    if path.startswith(("/", "./", "../", "~", "\\")) or "\\" in path or ".." in path:
        raise BadRequest(
            "Local file paths aren't allowed: fal can't read this machine's disk. "
            "Use an https URL or a Hugging Face repo id."
        )
    if not HF_REPO_RE.fullmatch(path):
        raise BadRequest(
            "That isn't an https URL or a Hugging Face repo id. Use `owner/repo`, "
            "`owner/repo/file.safetensors` or `https://…/file.safetensors`."
        )
    return path


def _check_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError:
        raise BadRequest("That LoRA URL can't be parsed.") from None
    if parts.scheme.lower() != "https":
        raise BadRequest(
            f"`{parts.scheme}:` URLs aren't allowed; the LoRA URL must start with https://."
        )
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise BadRequest(
            "The LoRA URL contains credentials (user:password@…); use a public or signed URL."
        )
    if not host:
        raise BadRequest("The LoRA URL has no host.")
    host = _resolver_host(host)
    if _private_host(host):
        raise BadRequest(
            f"The LoRA URL points at a private or local address ({host}); fal can only fetch "
            "public URLs."
        )
    if not parts.path.lower().endswith(".safetensors"):
        raise BadRequest("The LoRA URL must point at a `.safetensors` file.")
    return url


def check_scale(scale: float) -> float:
    if not SCALE_MIN <= scale <= SCALE_MAX:
        raise BadRequest(
            f"The scale must be between {SCALE_MIN:g} and {SCALE_MAX:g}; you gave {scale:g}."
        )
    return scale


def parse_triggers(text: str | None) -> list[str]:
    """Comma-separated trigger words, trimmed, unique, bounded."""
    if not text:
        return []
    words: list[str] = []
    for raw in text.split(","):
        word = raw.strip()
        if not word:
            continue
        if _has_invisible(word):
            raise BadRequest("Trigger words can't contain invisible characters.")
        if len(word) > TRIGGER_LEN_MAX:
            raise BadRequest(f"Trigger words are at most {TRIGGER_LEN_MAX} characters each.")
        if word.lower() not in (w.lower() for w in words):
            words.append(word)
    if len(words) > TRIGGER_MAX:
        raise BadRequest(f"At most {TRIGGER_MAX} trigger words per LoRA.")
    return words


def check_description(text: str | None) -> str:
    text = (text or "").strip()
    if _BIDI.search(text):
        raise BadRequest(
            "Descriptions can't contain direction-changing characters: they would reorder "
            "what members read in the LoRA list."
        )
    if len(text) > DESCRIPTION_MAX:
        raise BadRequest(
            f"The description is {len(text)} characters; the limit is {DESCRIPTION_MAX}."
        )
    return text
