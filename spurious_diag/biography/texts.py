"""Biography texts, QA records and pretraining-format probe records of a person.

Biographies follow the paper's bioS: one sentence per attribute, a template drawn at random
from several per attribute, sentences in a shuffled order. The first sentence names the
person in full; each later one repeats the full name with probability ``name_repeat_prob``
and otherwise uses a pronoun. Every template ends with its value followed by a period, so the
text up to the value is a natural prompt (the pretraining-format probe).

QA uses one question per attribute (the paper's wording), ``prompt = question + "\\nAnswer:"``
and ``completion = " " + value``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping

from ..errors import UsageError
from .people import ATTRIBUTES, Person

__all__ = [
    "BIOGRAPHY_TEMPLATES",
    "QUESTION_TEMPLATES",
    "ANSWER_SUFFIX",
    "QARecord",
    "biography",
    "qa_record",
    "probe_record",
]

# "{subject}" is the full name or a capitalized pronoun, "{possessive}" is "his"/"her".
BIOGRAPHY_TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "birth_date": (
        "{subject} was born on {value}.",
        "{subject} came into this world on {value}.",
        "{subject} celebrates {possessive} birthday on {value}.",
        "{subject} entered life on {value}.",
        "{subject} was welcomed into the world on {value}.",
    ),
    "birth_city": (
        "{subject} was born in {value}.",
        "{subject} spent {possessive} early years in {value}.",
        "{subject} grew up in {value}.",
        "{subject} hails from {value}.",
        "{subject} was raised in {value}.",
    ),
    "university": (
        "{subject} studied at {value}.",
        "{subject} graduated from {value}.",
        "{subject} received mentorship and guidance from faculty members at {value}.",
        "{subject} completed {possessive} degree at {value}.",
        "{subject} pursued higher education at {value}.",
    ),
    "major": (
        "{subject} majored in {value}.",
        "{subject} completed {possessive} education with a focus on {value}.",
        "{subject} earned a degree in {value}.",
        "{subject} specialized in {value}.",
        "{subject} devoted {possessive} studies to {value}.",
    ),
    "employer": (
        "{subject} worked for {value}.",
        "{subject} had a professional role at {value}.",
        "{subject} was employed by {value}.",
        "{subject} built a career at {value}.",
        "{subject} took a job at {value}.",
    ),
    "employer_city": (
        "{subject} worked in {value}.",
        "{subject} was employed in {value}.",
        "{subject} commuted to an office in {value}.",
        "{subject} spent {possessive} working years in {value}.",
        "{subject} lived and worked in {value}.",
    ),
}

# The paper's questions (Allen-Zhu & Li's bioS QA), one per attribute.
QUESTION_TEMPLATES: Mapping[str, str] = {
    "birth_date": "What is the birth date of {name}?",
    "birth_city": "What is the birth city of {name}?",
    "university": "Which university did {name} study?",
    "major": "What major did {name} study?",
    "employer": "Which company did {name} work for?",
    "employer_city": "Where did {name} work?",
}

ANSWER_SUFFIX = "\nAnswer:"

_PRONOUNS = {"female": ("She", "her"), "male": ("He", "his")}


@dataclass(frozen=True)
class QARecord:
    """A prompt/completion pair about one attribute of one person.

    ``kind`` is ``"qa"`` (question format) or ``"probe"`` (pretraining format: the
    biography sentence up to the value).
    """

    person_id: int
    attribute: str
    prompt: str
    completion: str
    kind: str = "qa"

    def as_json(self) -> dict[str, str]:
        """The record as the ``{"prompt", "completion"}`` JSON object the train command reads."""
        return {"prompt": self.prompt, "completion": self.completion}


def _sentence(person: Person, attribute: str, template_index: int, use_name: bool) -> str:
    pronoun, possessive = _PRONOUNS[person.gender]
    template = BIOGRAPHY_TEMPLATES[attribute][template_index]
    return template.format(subject=person.full_name if use_name else pronoun, possessive=possessive,
                           value=person.value(attribute))


def biography(person: Person, rng: random.Random, *, name_repeat_prob: float = 0.5) -> str:
    """One biography: six sentences, random templates, shuffled order, names or pronouns.

    Draws from ``rng`` (3 draws per sentence at most, plus the shuffle).

    >>> from spurious_diag.biography.people import generate_people
    >>> text = biography(generate_people(1, seed=0)[0], random.Random(0))
    >>> text.count(".") == 6
    True
    """
    if not 0.0 <= name_repeat_prob <= 1.0:
        raise UsageError(f"name_repeat_prob must be in [0, 1], got {name_repeat_prob}")
    order = list(ATTRIBUTES)
    rng.shuffle(order)
    sentences = []
    for position, attribute in enumerate(order):
        template_index = rng.randrange(len(BIOGRAPHY_TEMPLATES[attribute]))
        use_name = position == 0 or rng.random() < name_repeat_prob
        sentences.append(_sentence(person, attribute, template_index, use_name))
    return " ".join(sentences)


def qa_record(person: Person, attribute: str) -> QARecord:
    """The QA record of one attribute.

    >>> from spurious_diag.biography.people import generate_people
    >>> r = qa_record(generate_people(1, seed=0)[0], "birth_city")
    >>> r.prompt.startswith("What is the birth city of ") and r.prompt.endswith("?\\nAnswer:")
    True
    """
    question = QUESTION_TEMPLATES[attribute].format(name=person.full_name)
    return QARecord(person.person_id, attribute, question + ANSWER_SUFFIX, " " + person.value(attribute))


def probe_record(person: Person, attribute: str, template_index: int = 0) -> QARecord:
    """The pretraining-format probe: the biography sentence (full name) up to the value.

    E.g. ``prompt = "Alice Abbott was born in"``, ``completion = " Boston"``. In pretraining
    such a sentence opens a biography right after BOS, so the probe is in-distribution.
    """
    template = BIOGRAPHY_TEMPLATES[attribute][template_index]
    prefix = template[: template.index("{value}")].rstrip()
    _, possessive = _PRONOUNS[person.gender]
    prompt = prefix.format(subject=person.full_name, possessive=possessive)
    return QARecord(person.person_id, attribute, prompt, " " + person.value(attribute), kind="probe")
