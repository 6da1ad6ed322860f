"""Property-based fuzzing of what admins type into the LoRA registry: no input gets past the
checks unsafe, and none makes them fail with anything but a message.

For any input the checks either refuse it with a BadRequest (a message for the admin) or return
a value that is safe to store and to send to fal: never another exception. A URL they accept is
one a mainstream client (httpx) parses the same way, carries no credentials, and points at no
private, loopback, link-local or otherwise non-public address in any spelling: dotted, integer,
hex, octal, short, IPv6, or Unicode look-alike digits and letters that resolvers fold to ASCII.
"""

from __future__ import annotations

import ipaddress
import socket
import string
import unicodedata
from urllib.parse import urlsplit

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from client.schema import LoraWeight
from jobs.errors import BadRequest
from jobs.loras import (
    DESCRIPTION_MAX,
    HF_REPO_RE,
    NAME_RE,
    PATH_MAX,
    TRIGGER_LEN_MAX,
    TRIGGER_MAX,
    check_description,
    check_name,
    check_path,
    check_scale,
    parse_triggers,
)

FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,  # the same examples every run: the suite is deterministic
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Characters that hide or reorder text (zero-width, bidi controls, BOM) and other format chars.
INVISIBLE = st.sampled_from(
    [
        *("\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c"),
        *("\u202d", "\u202e", "\u2060", "\u2066", "\u2067", "\u2068", "\u2069", "\ufeff"),
        *("\x00", "\n"),
    ]
)
NAME_CHARS = st.sampled_from(string.ascii_letters + string.digits + "-_ .'\";`é\u0430")


# Embeddings, overrides, isolates and marks: what reorders the text a reader sees.
BIDI_CONTROLS = {"LRE", "RLE", "PDF", "LRO", "RLO", "LRI", "RLI", "FSI", "PDI", "LRM", "RLM"}


def is_invisible(ch: str) -> bool:
    return unicodedata.category(ch) in {"Cf", "Cc", "Zl", "Zp"}


# ------------------------------------------------------------------------------------ names


names = st.one_of(
    st.text(max_size=60),
    st.text(NAME_CHARS, max_size=40),
    st.builds(
        lambda a, z, b: a + z + b, st.text(NAME_CHARS, max_size=16), INVISIBLE, st.text(max_size=16)
    ),
)


@FUZZ
@given(names)
@example("clay\u200b")
@example("\u202eyalc")
@example("x'; DROP TABLE loras;--")
@example(" " * 40)
def test_check_name_refuses_or_returns_a_plain_name(text: str) -> None:
    try:
        name = check_name(text)
    except BadRequest as error:
        assert str(error)
        return
    assert NAME_RE.fullmatch(name)
    assert 1 <= len(name) <= 32
    assert not any(is_invisible(ch) for ch in name)
    assert name == text.strip()
    assert check_name(name) == name


# ------------------------------------------------------------------------------------ paths

PRIVATE_V4 = st.sampled_from(
    [
        *("127.0.0.1", "10.1.2.3", "192.168.0.10", "172.16.5.4", "169.254.169.254", "0.0.0.0"),
        *("100.64.0.1", "224.0.0.1", "255.255.255.255", "127.8.9.10"),
    ]
)
DIGIT_FORMS = [
    str.maketrans("0123456789", "０１２３４５６７８９"),  # fullwidth
    str.maketrans("123456789", "①②③④⑤⑥⑦⑧⑨"),  # circled
    str.maketrans("0123456789", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗"),  # mathematical bold
]


def spellings(address: str) -> list[str]:
    """The ways an IPv4 address can be written so that some resolver reads it as that address."""
    packed = int(ipaddress.IPv4Address(address))
    parts = address.split(".")
    forms = [
        address,
        str(packed),
        hex(packed),
        ".".join(f"0{int(p):o}" for p in parts),
        ".".join(hex(int(p)) for p in parts),
        f"{parts[0]}.{int(parts[1]) * 65536 + int(parts[2]) * 256 + int(parts[3])}",
        f"[::ffff:{address}]",
        address + ".",
    ]
    forms += [address.translate(table) for table in DIGIT_FORMS]
    return forms


private_hosts = st.one_of(
    PRIVATE_V4.flatmap(lambda a: st.sampled_from(spellings(a))),
    st.sampled_from(
        [
            *("localhost", "LOCALHOST", "localhost.", "ⓛⓞⓒⓐⓛⓗⓞⓢⓣ", "ｌｏｃａｌｈｏｓｔ"),
            *("[::1]", "[0:0:0:0:0:0:0:1]", "[fe80::1]", "[fc00::1]", "[::]"),
            *("metadata.google.internal", "printer.local", "x.localhost", "0", "127.1"),
        ]
    ),
)
public_hosts = st.sampled_from(["huggingface.co", "v3.fal.media", "example.com", "8.8.8.8"])
hosts = st.one_of(
    private_hosts,
    public_hosts,
    st.text(st.sampled_from(string.ascii_lowercase + string.digits + ".-_"), min_size=1),
    st.text(min_size=1, max_size=30),
)
userinfo = st.sampled_from(["", "", "user:pw@", "user@", ":@", "a%40b@"])
ports = st.sampled_from(["", "", ":443", ":8080", ":0", ":99999", ":abc"])
tails = st.sampled_from(
    ["/a.safetensors", "/dir/x.SAFETENSORS", "/a.bin", "", "/a.safetensors?x=1", "#/a.safetensors"]
)
schemes = st.sampled_from(["https://", "https://", "HTTPS://", "http://", "file://", "ftp://"])

urls = st.builds(lambda *parts: "".join(parts), schemes, userinfo, hosts, ports, tails)
repo_ids = st.builds(
    lambda owner, repo, file: f"{owner}/{repo}{file}",
    st.text(max_size=12),
    st.text(max_size=12),
    st.sampled_from(["", "/x.safetensors", "/../x.safetensors", "/a b.safetensors"]),
)
paths = st.one_of(urls, repo_ids, st.text(max_size=80))


def public_address(host: str) -> bool:
    """An independent oracle: how the C resolver's legacy parser and ipaddress read `host`."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare).is_global
    except ValueError:
        pass
    try:
        packed = socket.inet_aton(bare)  # accepts 127.1, 0x7f.1, 2130706433, 0177.0.0.1
    except (OSError, ValueError):
        return bare not in ("localhost",) and not bare.endswith(
            (".localhost", ".local", ".internal")
        )
    return ipaddress.IPv4Address(packed).is_global


@FUZZ
@given(paths)
@example("https://①②⑦.0.0.1/x.safetensors")
@example("https://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/x.safetensors")
@example("https://xn--/x.safetensors")
@example("https://0x7f.1/x.safetensors")
@example("https://example.com\\@10.0.0.1/x.safetensors")
@example("https://10.0.0.1#@example.com/x.safetensors")
def test_check_path_refuses_or_returns_a_public_https_url_or_repo_id(text: str) -> None:
    try:
        path = check_path(text)
    except BadRequest as error:
        assert str(error)
        return
    assert path == text.strip()
    assert 0 < len(path) <= PATH_MAX
    assert not any(ch.isspace() or is_invisible(ch) for ch in path)
    LoraWeight(path=path, scale=1.0)  # the endpoint schema takes it
    if "://" not in path:
        assert HF_REPO_RE.fullmatch(path), path
        assert ".." not in path and not path.startswith("/")
        return
    split = urlsplit(path)
    assert split.scheme.lower() == "https"
    assert split.username is None and split.password is None
    assert split.path.lower().endswith(".safetensors")
    seen = {split.hostname or ""}
    try:
        parsed = httpx.URL(path)  # a second parser, the one our own client uses
    except httpx.InvalidURL:
        pass  # a host httpx (IDNA 2008) refuses cannot be fetched by it either
    else:
        assert parsed.scheme == "https" and parsed.userinfo == b""
        seen.add(parsed.host)
    # Neither parser sees a host that a resolver reads as a private address.
    for host in seen:
        folded = unicodedata.normalize("NFKC", host).lower().rstrip(".")
        assert public_address(folded), f"{path} reaches {host!r}"


# --------------------------------------------------------------------- scale, triggers, text


@FUZZ
@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**20), 10**20))
def test_check_scale_accepts_only_the_endpoint_range(scale: float) -> None:
    try:
        value = check_scale(scale)
    except BadRequest:
        return
    assert 0.0 <= value <= 4.0
    LoraWeight(path="owner/repo", scale=value)


@FUZZ
@given(st.one_of(st.none(), st.text(max_size=800), st.lists(names, max_size=15).map(",".join)))
def test_triggers_and_descriptions_are_bounded(text: str | None) -> None:
    try:
        words = parse_triggers(text)
    except BadRequest:
        words = None
    if words is not None:
        assert len(words) <= TRIGGER_MAX
        assert len({w.lower() for w in words}) == len(words)
        for word in words:
            assert word and word == word.strip() and "," not in word
            assert len(word) <= TRIGGER_LEN_MAX
            assert not any(is_invisible(ch) for ch in word)
    try:
        description = check_description(text)
    except BadRequest:
        return
    assert len(description) <= DESCRIPTION_MAX
    assert not any(unicodedata.bidirectional(ch) in BIDI_CONTROLS for ch in description)
