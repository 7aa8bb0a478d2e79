"""Task sequences of the Biography scenario: N new tasks on disjoint new people, the scenario unchanged."""

import pytest

from spurious_diag.biography import ScenarioSizes, build_scenario
from spurious_diag.biography.tasks import biography_tasks
from spurious_diag.errors import UsageError


def _names(task) -> set[str]:
    """Full names, from the birth-city questions (``What is the birth city of NAME?``)."""
    return {r.prompt.split(" of ", 1)[1].split("?")[0] for r in task.train if r.attribute == "birth_city"}


def test_later_tasks_hold_new_disjoint_people_and_leave_the_scenario_alone():
    data = build_scenario(seed=2, sizes=ScenarioSizes(6, 2, 2, 5), bios_per_person=1)
    digest = data.sha256
    tasks = biography_tasks(data, new_tasks=4)
    assert [t.name for t in tasks] == ["task0", "task1", "task2", "task3", "task4"]
    assert tasks[:2] == biography_tasks(data)  # the first two are the scenario's, as before
    assert all(len(t.train) == len(tasks[1].train) and t.evals == {"train": t.train} for t in tasks[2:])
    everyone = {p.full_name for p in data.people}
    seen = set(everyone)
    for task in tasks[2:]:
        names = _names(task)
        assert len(names) == 5 and not names & seen
        assert min(r.person_id for r in task.train) >= len(data.people)
        seen |= names
    assert data.sha256 == digest
    again = biography_tasks(build_scenario(seed=2, sizes=ScenarioSizes(6, 2, 2, 5), bios_per_person=1), new_tasks=4)
    assert [t.train for t in again] == [t.train for t in tasks]  # seeded


def test_at_least_one_new_task():
    with pytest.raises(UsageError):
        biography_tasks(build_scenario(seed=2, sizes=ScenarioSizes(2, 1, 1, 1), bios_per_person=1), new_tasks=0)
