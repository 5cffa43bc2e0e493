"""Label selectors: what parses, what matches, and the one line a bad selector gets."""

from __future__ import annotations

import pytest

from gpufleet.selectors import SelectorError, describe, matches, parse

LABELS = {"role": "chat", "zone": "a", "gpu": "a100"}


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["role=chat"], True),
        (["role==chat"], True),
        (["role=coder"], False),
        (["role=chat", "zone!=b"], True),
        (["role=chat,zone!=a"], False),
        (["spot!=yes"], True),  # absent counts as not equal
        (["gpu"], True),
        (["spot"], False),
        (["!spot"], True),
        (["!gpu"], False),
        ([], True),
    ],
)
def test_matches(items: list[str], expected: bool) -> None:
    assert matches(parse(items), LABELS) is expected


def test_describe_round_trips() -> None:
    selector = parse(["role=chat,zone!=b", "gpu", "!spot"])
    assert describe(selector) == "role=chat,zone!=b,gpu,!spot"
    assert parse([describe(selector)]) == selector


@pytest.mark.parametrize("item", ["=chat", "role=chat=x", "ro le=chat", "role=a,,zone=b", "role!"])
def test_bad_selector_is_one_line_with_the_form(item: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse([item])
    message = str(caught.value)
    assert "\n" not in message and item in message
    assert "KEY=VALUE" in message or "empty item" in message


def test_too_many_requirements() -> None:
    with pytest.raises(SelectorError, match="at most 64"):
        parse([",".join(f"k{i}=v" for i in range(65))])
