"""The Biography benchmark's tasks, as the continual runner takes them, and their training by the
recipe (DESIGN.md §5)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence, Union

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..continual.evaluation import Evaluation
from ..continual.ewc import FisherDiagonal
from ..continual.lamol import PSEUDO_SAMPLE_RATIO
from ..continual.methods import Method
from ..continual.preliminary import PreliminaryRuns
from ..continual.result import SequenceResult
from ..continual.runner import SequenceOptions, run_sequence
from ..continual.tasks import EvalSchedule, Task
from ..errors import UsageError
from ..training.settings import TrainSettings
from .people import ATTRIBUTES, generate_more_people
from .recipe import BiographyRecipe
from .scenario import BiographyData
from .texts import qa_record

__all__ = ["biography_tasks", "train_task0", "train_task1"]


def biography_tasks(data: BiographyData, new_tasks: int = 1) -> list[Task]:
    """Task 0 and ``new_tasks`` new tasks of a Biography scenario.

    ``task0``: QA on the Task 0 training people; evaluated on held-out ``test`` people (its
    primary set) and ``val`` people (for choosing k and other selections). ``task1``: QA on the
    scenario's new people, evaluated on the same people (``train``, memorizing new facts).
    ``task2`` … ``task<N>``: the same on as many more new people each (``sizes.task1``), disjoint
    from everyone before, drawn from the scenario's seed in a stream of their own, so the
    scenario itself (its people and hash) stays as it is.

    Raises:
        UsageError: ``new_tasks`` < 1, or more people than the name pools allow.
    """
    if new_tasks < 1:
        raise UsageError(f"new_tasks must be >= 1, got {new_tasks}")
    tasks = [
        Task("task0", data.qa("task0_train"), {"test": data.qa("task0_test"), "val": data.qa("task0_val")}),
        Task("task1", data.qa("task1"), {"train": data.qa("task1")}),
    ]
    people = list(data.people)
    for k in range(2, new_tasks + 1):
        more = generate_more_people(people, data.sizes.task1, data.seed, stream=f"task{k}")
        people.extend(more)
        records = [qa_record(p, a) for p in more for a in ATTRIBUTES]
        tasks.append(Task(f"task{k}", records, {"train": records}))
    return tasks


def _per_task(recipe: BiographyRecipe, n_tasks: int) -> list[TrainSettings]:
    """Task 0's settings, then every new task's: each but the last ends at its early-stop point
    (the next starts from there); the last marks it and trains on to its end (unless the recipe's
    ``train_past_stop`` is False)."""
    task0, new = recipe.settings()
    return [task0, *[dataclasses.replace(new, stop_training=True)] * (n_tasks - 2), new]


def train_task0(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, tasks: Sequence[Task],
                recipe: BiographyRecipe = BiographyRecipe(), method: Method = Method.seq()) -> SequenceResult:
    """Train Task 0 in place on ``model`` (the pretrained base), scored every 100 steps.

    Task 0's data order uses seed 0, so every Task 1 run of every seed starts from the same
    model (the benchmark varies the Task 1 order). ``method`` matters only for methods that
    change how the first task trains (LAMOL's language-model term); the others train it as SEQ.
    """
    sparse = EvalSchedule(dense_every=100, dense_until=0, sparse_every=100, stop_check_every=0)
    return run_sequence(model, tokenizer, tasks, method, _per_task(recipe, len(tasks)), seed=0,
                        options=SequenceOptions(schedule=sparse, last_task=0))


def train_task1(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, tasks: Sequence[Task],
                method: Method, *, seed: int, recipe: BiographyRecipe = BiographyRecipe(),
                checkpoint_dir: Optional[Union[str, Path]] = None,
                fisher: Sequence[FisherDiagonal] = (),
                projection: PreliminaryRuns = PreliminaryRuns(),
                pseudo_ratio: float = PSEUDO_SAMPLE_RATIO,
                start_evaluation: Optional[Evaluation] = None) -> SequenceResult:
    """Train the new tasks (Task 1, and Task 2 … of a longer sequence) in place on ``model`` (the end
    of Task 0) with ``method``. Every new task marks its early-stop point; each but the last ends
    there, and the last trains on to its end (unless ``recipe.train_past_stop`` is False).

    Args:
        seed: the Task 1 data order (task i uses ``seed + i``).
        checkpoint_dir: weight-only ``checkpoint-N`` folders under ``checkpoint_dir/task1``
            (dense in the dip window, geometric after); None saves nothing.
        fisher: EWC's Task 0 Fisher term, when computed once for several runs.
        projection: GP's preliminary window and projection rule.
        pseudo_ratio: LAMOL's pseudo-samples per training record of a new task.
        start_evaluation: Task 0's last full evaluation of this model, reused as Task 1's step 0
            (:class:`~spurious_diag.continual.runner.SequenceOptions`).
    """
    return run_sequence(model, tokenizer, tasks, method, _per_task(recipe, len(tasks)), seed=seed, fisher=fisher,
                        options=SequenceOptions(schedule=recipe.schedule(), first_task=1, checkpoint_dir=checkpoint_dir,
                                                projection=projection, pseudo_ratio=pseudo_ratio,
                                                start_evaluation=start_evaluation))
