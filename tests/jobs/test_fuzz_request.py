"""Property-based fuzzing of edit-request validation: whatever a member (or a modified client)
sends is refused with a message or becomes a request inside fal's ranges.

Two layers, each fed anything:

- `build_request`: any options, inputs, LoRAs, seed and server caps either raise BadRequest or
  give a recipe whose fal input is inside every range of the endpoint (docs/fal-queue.md,
  "The edit endpoint's schema"), under the server's caps, and that survives the
  store-and-reload a rerun does.
- The slash-command path: any option payload a modified client could send for any command is
  either answered by the option check (`cogs.options.option_problem`) or conforms to the
  command's declaration; for /edit, the options the check lets through then turn into
  `EditOptions` without a validation error and into a recipe or a BadRequest, as in the cog.
"""

from __future__ import annotations

import math
from typing import Any

from discord import AppCommandOptionType as OptionType
from discord import app_commands
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from client.schema import PRESET_DIMENSIONS, EditInput
from cogs.admin import Admin
from cogs.edit import Edit
from cogs.loras import Loras
from cogs.members import Members
from cogs.options import STRING_MAX, option_problem
from jobs.errors import BadRequest
from jobs.request import (
    _INVISIBLE,
    PROMPT_MAX,
    SEED_MAX,
    SIZE_CHOICES,
    EditOptions,
    EditRequest,
    InputRef,
    LoraPick,
    RecipeLora,
    build_request,
)

FUZZ = settings(
    max_examples=500,
    deadline=None,
    derandomize=True,  # the same examples every run: the suite is deterministic
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(max_size=40).map(lambda t: t * 200),  # long strings past Discord's caps
    st.sampled_from(["100", "200", "", "NaN", "1e309", "-0", "square_hd", "png", "clay"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
prompts = st.one_of(
    st.text(min_size=1, max_size=60),
    st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), min_size=1),
    st.text(st.sampled_from(" \u200b\u200d\u202e\u2066\ufeffa@'\";`\n"), max_size=30),
    st.integers(1, 3000).map(lambda n: "p" * n),
)


def mostly(
    valid: st.SearchStrategy[Any], wild: st.SearchStrategy[Any], *, none: bool = True
) -> st.SearchStrategy[Any]:
    """Valid values nine times in ten (so acceptance is explored too), anything otherwise."""

    def pick(n: int) -> st.SearchStrategy[Any]:
        if n == 0:
            return wild
        return st.none() if none and n < 3 else valid

    return st.integers(0, 9).flatmap(pick)


wild_ints = st.integers(-(2**66), 2**66)
wild_floats = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def options_strategy(draw: st.DrawFn) -> EditOptions:
    """Any options; the size is a preset, a width and height, or anything, in turn."""
    mode = draw(st.sampled_from(["default", "preset", "custom", "wild"]))
    size = width = height = None
    if mode == "preset":
        size = draw(st.sampled_from([*SIZE_CHOICES, "custom"]))
    elif mode == "custom":
        width, height = draw(st.integers(512, 2048)), draw(st.integers(512, 2048))
    elif mode == "wild":
        size = draw(st.none() | st.text(max_size=12) | st.sampled_from([*SIZE_CHOICES]))
        width, height = draw(st.none() | wild_ints), draw(st.none() | wild_ints)
    return EditOptions(
        prompt=draw(prompts),
        loras=draw(
            st.lists(
                st.builds(
                    LoraPick, name=st.text(max_size=8), scale=mostly(st.floats(0, 4), wild_floats)
                ),
                max_size=4,
            )
        ),
        seed=draw(mostly(st.integers(0, SEED_MAX), wild_ints)),
        guidance=draw(mostly(st.floats(0, 20), wild_floats)),
        steps=draw(mostly(st.integers(4, 50), wild_ints)),
        size=size,
        width=width,
        height=height,
        count=draw(mostly(st.integers(1, 4), wild_ints)),
        acceleration=draw(st.sampled_from([None, "none", "regular", "high"])),
        expand_prompt=draw(st.sampled_from([None, True, False])),
        output_format=draw(st.sampled_from([None, "png", "jpeg", "webp"])),
    )


one_input = st.builds(
    InputRef,
    sha256=st.just("0" * 64),
    url=st.just("https://v3.fal.media/files/x.png"),
    content_type=st.sampled_from(["image/png", "image/jpeg"]),
    width=st.one_of(st.integers(64, 4000), st.integers(64, 4000), st.integers(1, 100_000)),
    height=st.one_of(st.integers(64, 4000), st.integers(64, 4000), st.integers(1, 100_000)),
)
inputs_strategy = mostly(
    st.lists(one_input, min_size=1, max_size=3), st.lists(one_input, max_size=5), none=False
)
one_lora = st.builds(
    RecipeLora,
    id=st.integers(1, 10),
    name=st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    path=st.just("owner/repo"),
    scale=mostly(st.floats(0, 4), st.floats(allow_nan=True, allow_infinity=True), none=False),
    version=st.just(1),
    trigger_words=st.lists(st.text(max_size=10), max_size=3),
)
loras_strategy = mostly(st.lists(one_lora, max_size=3), st.lists(one_lora, max_size=5), none=False)


def assert_within_the_endpoint(request: EditRequest, max_images: int, max_steps: int) -> None:
    fal = request.to_fal_input()  # EditInput validates every range of the endpoint
    assert EditInput.model_validate(fal.model_dump(mode="json")) == fal
    assert 1 <= len(request.prompt) <= PROMPT_MAX
    assert request.prompt == request.prompt.strip() and not _INVISIBLE.search(request.prompt)
    assert request.prompt in request.final_prompt
    assert 0 <= request.seed <= SEED_MAX
    assert math.isfinite(request.guidance) and 0 <= request.guidance <= 20
    assert 4 <= request.steps <= min(50, max_steps)
    assert 1 <= request.count <= min(4, max_images)
    assert 512 <= request.width <= 2048 and 512 <= request.height <= 2048
    assert 1 <= len(request.inputs) <= 3 and len(request.loras) <= 3
    assert all(math.isfinite(x.scale) and 0 <= x.scale <= 4 for x in request.loras)
    if request.size in PRESET_DIMENSIONS:
        assert (request.width, request.height) == PRESET_DIMENSIONS[request.size]
    else:
        assert request.size in ("match_input", "custom")
    # A rerun reads the stored JSON back: it must come back equal.
    assert EditRequest.model_validate(request.model_dump(mode="json")) == request


@FUZZ
@given(
    options=options_strategy(),
    inputs=inputs_strategy,
    loras=loras_strategy,
    seed=mostly(st.integers(0, SEED_MAX), st.integers(-(2**70), 2**70), none=False),
    max_images=st.integers(1, 4),
    max_steps=st.integers(4, 50),
)
def test_build_request_refuses_or_stays_in_range(
    options: EditOptions,
    inputs: list[InputRef],
    loras: list[RecipeLora],
    seed: int,
    max_images: int,
    max_steps: int,
) -> None:
    try:
        request = build_request(
            options,
            inputs=inputs,
            loras=loras,
            seed=seed,
            safety_checker=True,
            upload_limit=10 * 1024 * 1024,
            max_images=max_images,
            max_steps=max_steps,
        )
    except BadRequest as error:
        assert str(error)
        event("refused")
        return
    event("accepted")
    assert_within_the_endpoint(request, max_images, max_steps)


# -------------------------------------------------------------------- the slash-command path

COMMANDS: list[app_commands.Command[Any, ..., Any]] = [
    value
    for cog in (Edit, Loras, Members, Admin)
    for value in vars(cog).values()
    if isinstance(value, app_commands.Command)
]
RESOLVED = {
    "attachments": {"100": {"id": "100"}},
    "users": {"200": {"id": "200"}},
    "members": {"200": {}},
    "roles": {"300": {"id": "300"}},
    "channels": {"400": {"id": "400", "type": 0}},
}
ENTITY_IDS = st.sampled_from(["100", "200", "300", "400", "999", "", "abc"])
VALID_IDS = {
    OptionType.attachment: ["100"],
    OptionType.user: ["200"],
    OptionType.role: ["300"],
    OptionType.channel: ["400"],
    OptionType.mentionable: ["200", "300"],
}
ENTITIES = (
    OptionType.attachment,
    OptionType.user,
    OptionType.role,
    OptionType.channel,
    OptionType.mentionable,
)


def valid_value(param: app_commands.Parameter) -> st.SearchStrategy[Any]:
    if param.choices:
        return st.sampled_from([c.value for c in param.choices])
    low, high = param.min_value, param.max_value
    if param.type is OptionType.string:
        return st.text(min_size=int(low or 0), max_size=min(int(high or 60), 60))
    if param.type is OptionType.integer:
        return st.integers(int(low) if low is not None else -(2**53), int(high or 2**53))
    if param.type is OptionType.number:
        return st.floats(low if low is not None else -1e6, high if high is not None else 1e6)
    if param.type is OptionType.boolean:
        return st.booleans()
    return st.sampled_from(VALID_IDS[param.type])


@st.composite
def payloads(
    draw: st.DrawFn, command: app_commands.Command[Any, ..., Any], wild_one_in: int = 6
) -> list[dict[str, Any]]:
    """Options as a modified client may send them: any subset, any values, extra names."""
    options = []
    for param in command.parameters:
        if not param.required and draw(st.integers(0, 2)) > 0:
            continue  # most optional options are left out, as members do
        if param.required and draw(st.integers(0, 30)) == 0:
            continue  # a required option left out
        wild = draw(st.integers(0, wild_one_in)) == 0
        value = draw(
            (ENTITY_IDS if param.type in ENTITIES else anything) if wild else valid_value(param)
        )
        options.append({"name": param.display_name, "type": param.type.value, "value": value})
    if draw(st.integers(0, 20)) == 0:
        options.append({"name": draw(st.text(max_size=10)), "type": 3, "value": "x"})
    return draw(st.permutations(options))


def conforms(param: app_commands.Parameter, value: Any) -> bool:
    """The declaration, read independently of the check under test."""
    kind = param.type
    if kind is OptionType.boolean:
        return isinstance(value, bool)
    if kind is OptionType.string:
        ok = isinstance(value, str) and len(value) <= (param.max_value or STRING_MAX)
        return ok and len(value) >= (param.min_value or 0)
    if kind in (OptionType.integer, OptionType.number):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if kind is OptionType.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        low, high = param.min_value, param.max_value
        return (low is None or value >= low) and (high is None or value <= high)
    return isinstance(value, str) and value in {"100", "200", "300", "400"}


@FUZZ
@given(st.sampled_from(COMMANDS).flatmap(lambda c: st.tuples(st.just(c), payloads(c))))
def test_option_check_answers_anything_that_does_not_conform(
    case: tuple[app_commands.Command[Any, ..., Any], list[dict[str, Any]]],
) -> None:
    command, options = case
    problem = option_problem(command, options, RESOLVED)
    if problem is not None:
        assert problem.endswith(".") and len(problem) < 1000
        event("answered by the option check")
        return
    event("conforms")
    params = {p.display_name: p for p in command.parameters}
    given_names = [o["name"] for o in options]
    assert len(given_names) == len(set(given_names))
    assert {p.display_name for p in command.parameters if p.required} <= set(given_names)
    for option in options:
        param = params[option["name"]]
        assert conforms(param, option["value"]), (param.display_name, option["value"])
        if param.choices:
            assert option["value"] in [c.value for c in param.choices]


@FUZZ
@given(
    payloads(Edit.edit, wild_one_in=40),
    inputs_strategy,
    loras_strategy,
    st.integers(0, SEED_MAX),
)
@example(
    [{"name": "prompt", "type": 3, "value": "x"}, {"name": "steps", "type": 4, "value": 4}],
    [],
    [],
    0,
)
def test_edit_options_that_pass_the_check_build_or_refuse(
    options: list[dict[str, Any]], inputs: list[InputRef], loras: list[RecipeLora], seed: int
) -> None:
    if option_problem(Edit.edit, options, RESOLVED) is not None:
        event("answered by the option check")
        return
    values = {o["name"]: o["value"] for o in options}
    picks = [
        LoraPick(name=values[name], scale=values.get(scale))
        for name, scale in (("lora", "scale"), ("lora2", "scale2"), ("lora3", "scale3"))
        if values.get(name)
    ]
    # The same mapping as cogs.edit.Edit.edit; it must never raise a ValidationError.
    parsed = EditOptions.model_validate(
        {
            "prompt": values["prompt"],
            "loras": picks,
            "seed": values.get("seed"),
            "guidance": values.get("guidance"),
            "steps": values.get("steps"),
            "size": values.get("size"),
            "width": values.get("width"),
            "height": values.get("height"),
            "count": values.get("count"),
            "acceleration": values.get("acceleration"),
            "expand_prompt": values.get("expand_prompt"),
            "output_format": values.get("format"),
        }
    )
    if not inputs:
        inputs = [
            InputRef(
                sha256="0" * 64,
                url="https://v3.fal.media/x.png",
                content_type="image/png",
                width=800,
                height=600,
            )
        ]
    try:
        request = build_request(
            parsed,
            inputs=inputs[:3],
            loras=loras[:3],
            seed=parsed.seed if parsed.seed is not None else seed,
            safety_checker=True,
            upload_limit=10 * 1024 * 1024,
        )
    except BadRequest:
        event("refused by build_request")
        return
    event("accepted")
    assert_within_the_endpoint(request, 4, 50)
