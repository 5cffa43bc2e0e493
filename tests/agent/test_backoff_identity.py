from __future__ import annotations

import random
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backoff import Backoff
from agent.identity import agent_id, check_name, parse_labels


def test_backoff_grows_caps_and_resets() -> None:
    backoff = Backoff(initial=0.5, maximum=8.0, rng=random.Random(1))
    delays = [backoff.next() for _ in range(8)]
    steps = [0.5, 1, 2, 4, 8, 8, 8, 8]
    assert all(step / 2 <= d <= step for d, step in zip(delays, steps, strict=True))
    backoff.reset()
    assert backoff.next() <= 0.5


@given(st.integers(min_value=0, max_value=2**32))
def test_jitter_spreads_agents(seed: int) -> None:
    """Agents with different random states do not retry in lockstep."""
    a, b = Backoff(rng=random.Random(seed)), Backoff(rng=random.Random(seed + 1))
    assert [a.next() for _ in range(5)] != [b.next() for _ in range(5)]


def test_agent_id_is_created_once_private(tmp_path: Path) -> None:
    first = agent_id(tmp_path / "state")
    assert agent_id(tmp_path / "state") == first
    assert stat.S_IMODE((tmp_path / "state" / "agent-id").stat().st_mode) == 0o600


def test_labels_and_names() -> None:
    assert parse_labels("role=chat, zone=a,") == {"role": "chat", "zone": "a"}
    assert parse_labels("") == {}
    with pytest.raises(ValueError, match="expected key=value"):
        parse_labels("role")
    assert check_name("gpu-a.rack2") == "gpu-a.rack2"
    for bad in ["", "-gpu", "gpu a", "../etc", "a" * 300]:
        with pytest.raises(ValueError, match="invalid node name"):
            check_name(bad)
