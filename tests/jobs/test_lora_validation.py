"""Registry input checks: each refused path or name says why."""

from __future__ import annotations

import pytest

from jobs.errors import BadRequest
from jobs.loras import check_name, check_path, parse_triggers


@pytest.mark.parametrize(
    "path",
    [
        "https://huggingface.co/o/r/resolve/main/edit.safetensors?download=true",
        "https://v3.fal.media/files/abc/my_lora.safetensors",
        "owner/repo",
        "owner/repo/sub/file.safetensors",
    ],
)
def test_accepted_paths(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("http://example.com/a.safetensors", "`http:` URLs aren't allowed"),
        ("file:///etc/passwd", "`file:` URLs aren't allowed"),
        ("data:application/octet-stream;base64,AAAA", "`data:` paths aren't allowed"),
        ("/home/me/lora.safetensors", "Local file paths aren't allowed"),
        ("C:\\loras\\x.safetensors", "Local file paths aren't allowed"),
        ("../secrets/x.safetensors", "Local file paths aren't allowed"),
        ("https://user:pw@example.com/a.safetensors", "contains credentials"),
        ("https://localhost/a.safetensors", "private or local address (localhost)"),
        ("https://127.0.0.1/a.safetensors", "private or local address (127.0.0.1)"),
        ("https://192.168.1.4/a.safetensors", "private or local address"),
        ("https://[::1]/a.safetensors", "private or local address (::1)"),
        ("https://169.254.169.254/latest.safetensors", "private or local address"),
        ("https://2130706433/a.safetensors", "private or local address"),
        ("https://example.com/model.bin", "must point at a `.safetensors` file"),
        ("https://example.com/" + "a" * 500 + ".safetensors", "the limit is 500"),
        ("not a path", "can't contain spaces"),
        ("just-a-name", "isn't an https URL or a Hugging Face repo id"),
    ],
)
def test_refused_paths_say_why(path: str, reason: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_path(path)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "isn't a valid LoRA name"),
        ("a" * 33, "isn't a valid LoRA name"),
        ("two words", "isn't a valid LoRA name"),
        ("clay\u200b", "invisible or direction-changing"),
        ("\u202eyalc", "invisible or direction-changing"),
        ("x'; DROP TABLE loras;--", "isn't a valid LoRA name"),
        ("ünïcode", "isn't a valid LoRA name"),
    ],
)
def test_refused_names(name: str, reason: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_name(name)
    assert reason in str(info.value)


def test_names_and_triggers_are_normalised() -> None:
    assert check_name("  Clay-Mation_2 ") == "Clay-Mation_2"
    assert parse_triggers(" CLAY, clay ,, stopmotion ") == ["CLAY", "stopmotion"]
    with pytest.raises(BadRequest, match="At most 10 trigger words"):
        parse_triggers(",".join(f"w{i}" for i in range(11)))
