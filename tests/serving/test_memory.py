"""Every hostile input once measured in gigabytes, against the server as docker/compose.yaml runs it:
each is refused (or served) with the web process and its inference process staying under 512 MB
above their idle size during the call, and back near idle afterwards (tests/memory.py)."""

import pytest

from tests.memory import MB, LivePlatform, predict_cases, upload_cases
from tests.registry.factories import tiny_model_dir


@pytest.mark.slow
@pytest.mark.django_db  # the tiny image model is trained once, through the task, in this process
def test_hostile_inputs_stay_within_512_mb_above_idle_and_return_to_it(tmp_path):
    model_dir = tiny_model_dir("image-classification")
    cases = predict_cases() + upload_cases(tmp_path / "hostile", model_dir)
    with LivePlatform(tmp_path / "platform", model_dir) as live:
        idle = live.idle()
        results = [live.measure(case, idle) for case in cases]
    report = "\n".join(
        f"{r.case.name}: {r.status}, peak +{r.above('peak', 'web') / MB:.0f} / +{r.above('peak', 'inference') / MB:.0f} MB, "
        f"after +{r.above('after', 'web') / MB:.0f} / +{r.above('after', 'inference') / MB:.0f} MB (web / inference)"
        for r in results
    )
    problems = [f"{r.case.name}: {problem}" for r in results for problem in r.problems()]
    assert not problems, "\n".join(problems) + "\n\n" + report
