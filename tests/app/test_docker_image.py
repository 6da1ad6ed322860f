"""The image has what the bot imports, and compose names only real settings.

No Docker engine runs here, so the image can't be built in CI: these tests read the
Dockerfile, .dockerignore and docker-compose.yml the way Docker would.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot import EXTENSIONS, Settings

ROOT = Path(__file__).resolve().parents[2]

# Imports everything the running bot imports: the entry point and every extension it loads.
_PROBE = f"""
import importlib, json, sys
sys.path.insert(0, {str(ROOT)!r})
import bot
for name in bot.EXTENSIONS:
    importlib.import_module(name)
files = [getattr(m, "__file__", None) for m in list(sys.modules.values())]
print(json.dumps([f for f in files if f]))
"""


def _runtime_top_level_names() -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, cwd="/"
    ).stdout
    names: set[str] = set()
    for file in json.loads(out):
        path = Path(file).resolve()
        if ROOT in path.parents and ".venv" not in path.parts:
            names.add(path.relative_to(ROOT).parts[0])
    return names


def _copied() -> set[str]:
    copied: set[str] = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copied.update(w.rstrip("/").removeprefix("./") for w in words[1:-1])
    return copied


def _ignored(name: str) -> bool:
    patterns = [
        p.strip().rstrip("/")
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def test_the_image_copies_every_module_and_package_the_bot_imports() -> None:
    needed = _runtime_top_level_names()
    # The probe must see the bot's own layers, or it proves nothing.
    assert {"bot.py", "cogs", "jobs", "client", "storage"} <= needed
    missing = sorted(needed - _copied())
    assert not missing, f"the Dockerfile does not COPY {missing}"
    ignored = sorted(name for name in needed if _ignored(name))
    assert not ignored, f".dockerignore keeps {ignored} out of the build context"


def test_the_image_leaves_test_tooling_out() -> None:
    assert not {"tests", "bench", "emulators"} & _copied()
    for name in ("tests", "bench", ".env", ".venv"):
        assert _ignored(name), f"{name} would be sent to the Docker build context"


def test_every_extension_is_a_module_in_the_image() -> None:
    for extension in EXTENSIONS:
        top = extension.split(".")[0]
        assert top in _copied(), extension


COMPOSE_FILES = sorted(path.name for path in ROOT.glob("docker-compose*.yml"))
# The postgres image's own settings, set for its service and reused in the bot's URL.
_POSTGRES_IMAGE_SETTINGS = {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"}


def _compose_settings(name: str = "docker-compose.yml") -> set[str]:
    text = (ROOT / name).read_text()
    names: set[str] = set()
    in_environment = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if re.match(r"^\s*environment:\s*$", line):
            in_environment = True
            indent = len(line) - len(line.lstrip())
            continue
        if in_environment:
            current = len(line) - len(line.lstrip())
            if current <= indent:
                in_environment = False
            else:
                match = re.match(r"^-?\s*([A-Z_][A-Z0-9_]*)\s*[:=]", stripped)
                if match:
                    names.add(match.group(1))
        names.update(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", line))
    return names


def test_compose_names_only_settings_that_exist() -> None:
    known = {name.upper() for name in Settings.model_fields}
    named = _compose_settings()
    assert "DATABASE_PATH" in named  # the parser reads the file, or this test proves nothing
    unknown = sorted(named - known)
    assert not unknown, f"docker-compose.yml sets {unknown}, which the bot does not read"


@pytest.mark.parametrize("name", [n for n in COMPOSE_FILES if n != "docker-compose.yml"])
def test_every_compose_variant_names_only_settings_that_exist(name: str) -> None:
    known = {setting.upper() for setting in Settings.model_fields} | _POSTGRES_IMAGE_SETTINGS
    named = _compose_settings(name)
    assert "DATABASE_URL" in named  # the parser reads the file, or this test proves nothing
    unknown = sorted(named - known)
    assert not unknown, f"{name} sets {unknown}, which the bot does not read"


@pytest.mark.parametrize("line", ["CMD", "USER"])
def test_the_image_runs_the_bot_as_a_non_root_user(line: str) -> None:
    text = (ROOT / "Dockerfile").read_text()
    if line == "CMD":
        assert 'CMD ["python", "bot.py"]' in text
    else:
        assert re.search(r"^USER (?!root)\w+", text, re.MULTILINE)
