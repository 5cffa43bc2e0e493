"""One naming rule for llama-cpp-python environments (gpufleet.envnames), which the agent, the
hub, hubctl and a host process's environment (gpufleet.process) all follow."""

from __future__ import annotations

import pytest

from gpufleet import envnames, process

GOOD = ["cpu", "vulkan", "vulkan-0.3.36", "cuda-0.3.36.post1", "rocm-0.3.36+rocm6", "cpu-1"]
BAD = ["metal", "", "vulkan-", "vulkan-latest", "cpu-0.3/../x", "cpu-0.3.36-rc1", "-0.3.36",
       "cpu-" + "1" * 33, "cpu-0.3.36!", "Vulkan-0.3.36"]  # fmt: skip


@pytest.mark.parametrize("name", GOOD)
def test_a_good_name_is_one_everywhere(name: str) -> None:
    assert envnames.is_environment(name)
    assert process.ENVIRONMENT.match(name)  # a host process may run from it


@pytest.mark.parametrize("name", BAD)
def test_a_bad_name_is_refused_everywhere(name: str) -> None:
    assert not envnames.is_environment(name)
    assert not process.ENVIRONMENT.match(name)


def test_the_checks_say_what_is_wrong_in_one_line() -> None:
    assert envnames.split_name("vulkan-0.3.36") == ("vulkan", "0.3.36")
    assert envnames.env_name("cpu", envnames.DEFAULT_VERSION) == "cpu-0.3.36"
    with pytest.raises(ValueError, match="backend 'metal' is not one of cuda, vulkan, rocm, cpu"):
        envnames.check_backend("metal")
    with pytest.raises(ValueError, match=r"version .latest. is not a version, e\.g\. 0\.3\.36"):
        envnames.check_version("latest")
    with pytest.raises(ValueError, match=r"is not BACKEND-VERSION, e\.g\. vulkan-0\.3\.36"):
        envnames.split_name("vulkan")
