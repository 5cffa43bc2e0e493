from __future__ import annotations

import os
import random
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backoff import Backoff
from agent.identity import agent_id, check_name, parse_address, parse_labels


def test_backoff_grows_caps_and_resets() -> None:
    backoff = Backoff(initial=0.5, maximum=8.0, rng=random.Random(1))
    delays = [backoff.next() for _ in range(8)]
    steps = [0.5, 1, 2, 4, 8, 8, 8, 8]
    assert all(step / 2 <= d <= step for d, step in zip(delays, steps, strict=True))
    backoff.reset()
    assert backoff.next() <= 0.5


def test_a_lost_link_redials_at_a_random_point_of_the_window_then_backs_off() -> None:
    """Agents that lost the same hub spread their first redial over the window (their
    heartbeat interval), not over the top half of the first step."""
    delays = [Backoff(rng=random.Random(seed)).after_link(20.0) for seed in range(500)]
    assert min(delays) >= 0 and max(delays) < 20.0
    assert max(sum(1 for d in delays if k <= d < k + 1) for k in range(20)) < 50
    assert max(Backoff(rng=random.Random(s)).after_link(0.1) for s in range(50)) < 0.5
    assert max(Backoff(rng=random.Random(s)).after_link(600) for s in range(50)) < 30.0
    backoff = Backoff(initial=0.5, maximum=8.0, rng=random.Random(2))
    backoff.after_link(5.0)
    assert 0.5 <= backoff.next() <= 1.0  # a redial that failed goes on from the second step


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


def test_advertise_addresses_are_host_names_or_ip_addresses() -> None:
    assert parse_address("") == ""
    assert parse_address("gpu-a.example.com") == "gpu-a.example.com"
    assert parse_address("10.0.0.7") == "10.0.0.7"
    assert parse_address("fe80::1") == "[fe80::1]"  # as a URL's host takes it
    for bad in ("http://gpu-a", "gpu a", "a..b", "-a", "a" * 254, "10.0.0.7:8000"):
        with pytest.raises(ValueError, match="invalid --advertise-address"):
            parse_address(bad)


def test_a_bad_advertise_address_stops_the_agent_with_one_line(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "agent", "--insecure", "--state-dir", str(tmp_path / "s"),
         "--config", "/dev/null", "--gpu-probe", "none", "--advertise-address", "http://a"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "proto"), str(root)])},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "invalid --advertise-address" in done.stderr
