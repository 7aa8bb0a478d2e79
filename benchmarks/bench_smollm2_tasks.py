"""Spurious forgetting on a real model: SmolLM2-135M-Instruct, Task A → Task B, SEQ vs Freeze(k).

Everything is generated here, offline, with fixed seeds. Three families of runs (``--families``,
default ``B,P``):

1. **Sequential tasks** (issue 7 item 1), both in the chat format (the tokenizer's template with
   its default system turn):
   - Task A, an instruction format over knowledge the base has: ``What number comes after N?`` /
     ``... before N?`` answered ``Answer: M`` + ``<|im_end|>``. Numbers are the "individuals":
     training, held-out and recovery numbers are disjoint. The base knows the facts (it continues
     ``55, 56, 57,`` with `` 58``) but not the format. Trained once, fully, shared by all methods.
   - Task B, new facts about fictional people answered in sentences (``Where was Elsa Varrow
     born?`` → ``Elsa Varrow was born in Porto.``), scored on the same people (memorization, as
     in the paper's Task 1). Trained from the Task A model with SEQ and Freeze(k) (embeddings,
     tied to the LM head here, + blocks 0..k−1 frozen).
2. **Plain-text fine-tuning of the chat model** (item 2, the analogue of the paper's safety
   result): Task P, the same fictional facts as raw text with NO chat template (``Elsa Varrow
   was born in the city of`` → `` Porto``), trained from the BASE with SEQ and Freeze(k).
3. **Single-task SFT** (family S, only with ``--families ...,S``): the paper's single-task claim,
   "freezing just the bottom 1 layer reduces general capability degradation while maintaining
   target performance". One generated chat-format task: arithmetic word problems with a worked
   answer (``Mira has 7 apples and buys 5 more. How many apples does Mira have now?`` →
   ``7 + 5 = 12. Answer: 12`` + ``<|im_end|>``), six templates (add, subtract, multiply small
   numbers), names from ``FIRST``, a few objects; ``s_train`` training and ``s_held`` held-out
   problems, disjoint by (template, numbers). Trained from the BASE with SEQ, Freeze(1) and
   Freeze(2), always these three (``--methods`` and ``freeze_ks`` apply to B and P only).
   Target: ``s_answer``, greedy decoding of the held-out problems (up to ``s_new_tokens``),
   correct when the integer after the first ``Answer:`` is the right one (the worked part is not
   checked and the turn need not end); ``s_em``, teacher-forced exact match of the whole
   completion + ``<|im_end|>`` (``evaluate_records``, mean over add / subtract / multiply);
   ``s_any``, the right number anywhere in the greedy answer. General capability: the proxies
   below. Table ``single_task.csv``: the base (the "before" values), SEQ, Freeze(1), Freeze(2),
   and each Freeze row minus SEQ. Measured here: (to be filled in by the full run).

Measured for every model: Task A / B / P greedy exact match (``evaluate_records``; held-out
numbers for A); general capability: perplexity on 30 short paragraphs sampled (seed 0) from the
base before any training, and exact match on raw-text facts the base completes correctly
(``The capital of France is`` → `` Paris``; only those kept); chat alignment on simple chat
questions the base answers correctly and ends with ``<|im_end|>`` within 24 greedy tokens: the
fraction that end the turn and the fraction that contain the answer
(:mod:`spurious_diag.probes.chat_alignment`).

Then: an audit of base → after A → after B(SEQ) (rank 8); ``diagnose(before=after A, after=after
B(SEQ))`` on Task A (recovery with the base as control, format probe with the raw counting
format, grafting, residual shift, geometry); and a recovery of P(SEQ)'s chat alignment: n chat
examples about OTHER questions (the base's own answers), scored on the held-out chat questions.
Its controls: the same recovered models scored on questions the base answered WRONG in chat at
the start, split by whether the base completes the same fact as raw text. Where it does not, the
knowledge was never there, and recovery (which never shows those facts) must not make them right.

Measured here (seed 0; the same numbers at 1 and 2 threads): Task A forgetting under Task B is
spurious and immediate. Task A falls from 0.975 to 0 by step 10, yet the SEQ model still gives
the right number (0.975) without ``Answer:``. Recovery with 5 examples brings back 0.925 (the
never-trained base: 0.80), and the counting format stays at 0.95. Freeze(0/2/6) does not protect
it: all are at 0 by step 10. At lr 3e-5, Freeze(6) only delays the drop (step 5: 0.55 vs 0.15)
and learns Task B worse (0.61 vs 0.91). Grafting agrees: bottom blocks [0, k) restore nothing up
to k = 15, while the top 15 restore 56%. Here the format lives in the upper half. Freezing helps
perplexity a little (B: 7.71 → 7.21, P: 14.5 → 10.9 with Freeze(6)). The plain-text fine-tune
ends chat turns too early (``The capital of Poland``). The correct rate falls from 1.0 to
0.07-0.17 under every method. Recovery of the SEQ model with 20 chat examples about other
questions restores 0.83, against 0.18 on facts the base never knew.

The forgetting map agrees with grafting (``--map-every 10``, SEQ's Task B checkpoints at steps 10,
30 and 50, 10 of the 32 layers; measured 2026-11-30): Task A is at 0 at every one of them, no layer
reverted alone restores any of it, and the bottom revert restores nothing through block 14 (grafting:
blocks [0, k) restore nothing up to k = 15), 0.95 / 0.63 / 0.61 through block 20 and all of it
through block 25. The alignment that Task B breaks lives in blocks ~15-25, spread over several of them. Wall time: 20 min at 2
threads on an idle machine with Task A cached, 38 min at 1 thread on a loaded one (load ~3)
training Task A.

    python benchmarks/bench_smollm2_tasks.py [--out runs/bench_smollm2_tasks] [--threads 1]
    python benchmarks/bench_smollm2_tasks.py --families S --out runs/bench_smollm2_single_task

Prints the tables and writes them as CSV (and ``summary.json``) into ``--out``. The Task A
model is cached in ``benchmarks/.cache/bench_smollm2_tasks`` (keyed by its data and settings);
``--fresh`` retrains it. Models after B, P and S live in a temporary dir (``--keep-models DIR``).
Family S alone trains no Task A: three runs of ``s_steps`` from the base, each evaluated.

``--quick`` is a smoke test of the whole script, for CI: the selected families at tiny sizes
(:data:`QUICK`: 2 steps per task at batch 2, a handful of records per set, 4 paragraphs, few chat
questions, SEQ only in B and P (S still runs SEQ, Freeze(1), Freeze(2)), no forgetting map,
``diagnose`` and the chat recovery on the tiny sets); explicit flags still override these. Task A is trained into the work
dir, never read from or written to the cache. Its numbers mean nothing: every table title says
so, ``SMOKE_TEST.txt`` is written beside the tables and ``summary.json`` has ``"quick": true``.
Default ``--out``: ``runs/bench_smollm2_tasks_quick``.

    python benchmarks/bench_smollm2_tasks.py --quick --families B,P,S --out /tmp/bench_quick
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(__file__))

from _models import CACHE, cache_key, smollm2_hf_dir  # noqa: E402

logger = logging.getLogger("bench_smollm2_tasks")
T0 = time.time()
# Set by ``--quick``: every table title starts with it, so smoke-test numbers are never taken for results.
TITLE_PREFIX = ""
SMOKE_LINE = "SMOKE TEST (--quick): tiny sizes, a few steps per task; these numbers are NOT results"


def stamp(message: str) -> None:
    print(f"[{time.time() - T0:7.1f}s] {message}", flush=True)


@dataclass(frozen=True)
class BenchConfig:
    """Everything that defines a run (written to ``summary.json``)."""

    a_steps: int = 50
    a_lr: float = 1e-4
    b_steps: int = 50
    b_lr: float = 1e-4
    p_steps: int = 50
    p_lr: float = 1e-4
    batch_size: int = 8
    freeze_ks: tuple[int, ...] = (0, 2, 6)
    curve_every: int = 10
    a_train_numbers: int = 200
    a_held_numbers: int = 20
    a_pool_numbers: int = 50
    people: int = 32
    recovery_ns: tuple[int, ...] = (5, 10)
    recovery_steps: int = 20
    recovery_lr: float = 1e-5
    graft_ks: tuple[int, ...] = (0, 2, 6, 15, 30)
    format_candidates: int = 5  # diagnose's format probe: rank the truth among at most this many values
    chat_held: int = 30
    chat_recovery_ns: tuple[int, ...] = (10, 20)
    chat_max_new_tokens: int = 24
    text_paragraphs: int = 30
    text_new_tokens: int = 48
    # > 0: Task B under SEQ saves every this many steps and ``diagnose_run`` maps the forgetting
    # over every ``map_stride``-th of those checkpoints (layer × step), set beside the grafting result,
    # on the layers below (the bottom arm's rows through blocks k − 1 match the graft depths k).
    map_every: int = 0
    map_stride: int = 2
    map_layers: tuple[int, ...] = (-1, 0, 1, 5, 10, 14, 20, 25, 29, 30)
    # Family S (single-task SFT from the base): 50 steps of batch 8 = one epoch of the 400 problems.
    s_steps: int = 50
    s_lr: float = 1e-4
    s_train: int = 400
    s_held: int = 60
    s_new_tokens: int = 48  # the base's worked answers need the room (s_any); trained models stop at ~20
    # > 0: only the first this many capitals are chat / raw-fact candidates (``--quick``; 0: all).
    chat_capitals: int = 0
    seed: int = 0


# ``--quick``: tiny sizes for a smoke test of every code path (explicit flags still override them).
QUICK: dict[str, Any] = {
    "a_steps": 2, "b_steps": 2, "p_steps": 2, "s_steps": 2, "batch_size": 2, "freeze_ks": (), "curve_every": 2,
    "a_train_numbers": 4, "a_held_numbers": 4, "a_pool_numbers": 4, "people": 4, "recovery_ns": (2,),
    "recovery_steps": 1, "graft_ks": (2,), "format_candidates": 2, "chat_held": 4, "chat_recovery_ns": (2,),
    "text_paragraphs": 4, "text_new_tokens": 16, "map_every": 0, "s_train": 8, "s_held": 4, "s_new_tokens": 24,
    "chat_capitals": 4,
}


# --------------------------------------------------------------------------- data

FIRST = ["Elsa", "Tomas", "Mira", "Oskar", "Lena", "Ivo", "Runa", "Bram", "Nadia", "Felix", "Ada", "Jonas",
         "Vera", "Emil", "Talia", "Ruben", "Greta", "Milo", "Sana", "Dario", "Hedda", "Leon", "Yara", "Otto"]
LAST = ["Varrow", "Quillan", "Dresk", "Hollin", "Marrow", "Tevian", "Corvel", "Ashgrove", "Penrick", "Lindqvar",
        "Brannock", "Velde", "Fenwick", "Orsini", "Kestrel", "Morrow", "Talbeck", "Wexley"]
# Not capitals, so a leaked Task B value never answers a chat question correctly by chance.
CITIES = ["Porto", "Bergen", "Lyon", "Graz", "Cork", "Malaga", "Turku", "Gdansk", "Leeds", "Basel", "Ghent",
          "Bremen"]
JOBS = ["baker", "carpenter", "dentist", "farmer", "lawyer", "pilot", "nurse", "teacher", "plumber", "painter",
        "tailor", "sailor"]

# Country → capital: the chat questions and the raw-text facts (each kept only where the base is right).
CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Germany": "Berlin", "Spain": "Madrid",
    "Russia": "Moscow", "China": "Beijing", "Egypt": "Cairo", "Canada": "Ottawa", "Greece": "Athens",
    "Portugal": "Lisbon", "Ireland": "Dublin", "Norway": "Oslo", "Sweden": "Stockholm", "Austria": "Vienna",
    "Poland": "Warsaw", "Thailand": "Bangkok", "Kenya": "Nairobi", "Peru": "Lima", "Cuba": "Havana",
    "Argentina": "Buenos Aires", "Mexico": "Mexico City", "England": "London", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Hungary": "Budapest", "Belgium": "Brussels", "the Netherlands": "Amsterdam",
    "South Korea": "Seoul", "India": "New Delhi", "Iran": "Tehran", "Turkey": "Ankara", "Australia": "Canberra",
    "Chile": "Santiago", "Colombia": "Bogota", "Vietnam": "Hanoi", "the Philippines": "Manila",
    "Indonesia": "Jakarta", "Ukraine": "Kyiv", "the Czech Republic": "Prague", "Switzerland": "Bern",
    "Iceland": "Reykjavik", "Scotland": "Edinburgh", "Saudi Arabia": "Riyadh", "Pakistan": "Islamabad",
    "Nigeria": "Abuja", "Venezuela": "Caracas", "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade",
    "Croatia": "Zagreb", "Morocco": "Rabat", "Ethiopia": "Addis Ababa", "Ghana": "Accra", "Malaysia": "Kuala Lumpur",
    "Singapore": "Singapore", "Nepal": "Kathmandu", "Bangladesh": "Dhaka", "Iraq": "Baghdad", "Syria": "Damascus",
    "Lebanon": "Beirut", "Jordan": "Amman", "Afghanistan": "Kabul", "Mongolia": "Ulaanbaatar", "Wales": "Cardiff",
    "Estonia": "Tallinn", "Latvia": "Riga", "Lithuania": "Vilnius",
    "Slovakia": "Bratislava", "Slovenia": "Ljubljana", "Uruguay": "Montevideo", "Paraguay": "Asuncion",
    "Ecuador": "Quito", "Bolivia": "La Paz", "Jamaica": "Kingston", "New Zealand": "Wellington",
    "South Africa": "Pretoria", "Tunisia": "Tunis", "Algeria": "Algiers", "Sudan": "Khartoum",
    "Uganda": "Kampala", "Tanzania": "Dodoma", "Zimbabwe": "Harare", "Senegal": "Dakar",
}
CHAT_OTHER = [
    ("How many days are in a week?", ("7", "seven")),
    ("How many hours are in a day?", ("24", "twenty-four")),
    ("How many months are in a year?", ("12", "twelve")),
    ("How many legs does a dog have?", ("4", "four")),
    ("What is the largest ocean on Earth?", ("Pacific",)),
    ("What color is grass?", ("green",)),
    ("What is the freezing point of water in Celsius?", ("0", "zero")),
    ("What planet do we live on?", ("Earth",)),
    ("What is the opposite of hot?", ("cold",)),
    ("What language is spoken in Brazil?", ("Portuguese",)),
    ("What language is spoken in Mexico?", ("Spanish",)),
    ("What language is spoken in Germany?", ("German",)),
    ("What is the currency of Japan?", ("yen",)),
    ("On which continent is Kenya?", ("Africa",)),
    ("On which continent is Peru?", ("South America",)),
    ("What gas do plants absorb from the air?", ("carbon dioxide", "CO2")),
]
RAW_OTHER = [
    ("The chemical symbol for gold is", " Au"), ("The chemical symbol for water is", " H"),
    ("The largest planet in the solar system is", " Jupiter"), ("The opposite of hot is", " cold"),
    ("A week has seven", " days"), ("The first month of the year is", " January"),
    ("The day after Monday is", " Tuesday"), ("Water freezes at 0 degrees", " Celsius"),
    ("The author of Romeo and Juliet is William", " Shakespeare"), ("The Eiffel Tower is in", " Paris"),
    ("The currency of the United States is the", " dollar"), ("Bees make", " honey"),
]
OBJECTS = ["apples", "pencils", "marbles", "stickers", "books", "cookies", "stamps", "shells", "cards", "buttons"]
# Family S: (template, operation, question). Each template's numbers: + a, b in 2..20; − 5 <= a <= 30,
# 2 <= b < a; × a, b in 2..12 (at least 121 problems per template).
ARITH_TEMPLATES = [
    ("add-buy", "+", "{name} has {a} {obj} and buys {b} more. How many {obj} does {name} have now?"),
    ("add-find", "+", "{name} finds {a} {obj} on Monday and {b} {obj} on Tuesday. How many {obj} did {name} "
                      "find in total?"),
    ("sub-give", "-", "{name} has {a} {obj} and gives {b} of them to a friend. How many {obj} does {name} have "
                      "left?"),
    ("sub-lose", "-", "{name} had {a} {obj} and lost {b}. How many {obj} does {name} have now?"),
    ("mul-box", "×", "{name} has {a} boxes with {b} {obj} in each box. How many {obj} does {name} have?"),
    ("mul-day", "×", "{name} collects {a} {obj} every day for {b} days. How many {obj} does {name} collect?"),
]
ARITH_OPS = {"+": ("add", lambda a, b: a + b), "-": ("subtract", lambda a, b: a - b),
             "×": ("multiply", lambda a, b: a * b)}
TEXT_OPENERS = [
    "The history of the Roman Empire", "In the morning, the farmer", "Photosynthesis is the process",
    "The city of London", "A good night's sleep", "The ocean covers", "When you cook pasta,",
    "The first computers", "Mountains are formed", "Learning a new language", "The human heart",
    "In the small village,", "Electric cars", "The library was quiet", "Rain falls when",
    "The teacher explained", "Birds migrate", "A healthy diet", "The old bridge", "Music has the power",
    "The scientist looked at", "During the winter,", "The market opened", "Volcanoes erupt when",
    "The recipe calls for", "Children learn", "The moon orbits", "Trees provide", "The museum displays",
    "Exercise helps",
]


def task_a_records(numbers: Sequence[int], chat: Any) -> list[dict[str, Any]]:
    """Chat-format Task A records (two attributes per number)."""
    out = []
    for n in numbers:
        out.append({"prompt": chat(f"What number comes after {n}?"), "completion": f"Answer: {n + 1}",
                    "attribute": "after", "person_id": n})
        out.append({"prompt": chat(f"What number comes before {n}?"), "completion": f"Answer: {n - 1}",
                    "attribute": "before", "person_id": n})
    return out


def task_a_raw_records(numbers: Sequence[int]) -> list[dict[str, Any]]:
    """The same facts in the pretraining (counting) format, for the format probe."""
    out = []
    for n in numbers:
        out.append({"prompt": f"{n - 2}, {n - 1}, {n},", "completion": f" {n + 1}", "attribute": "after",
                    "person_id": n})
        out.append({"prompt": f"{n + 2}, {n + 1}, {n},", "completion": f" {n - 1}", "attribute": "before",
                    "person_id": n})
    return out


def people(n_people: int, seed: int) -> list[tuple[str, str, str]]:
    """(name, city, job) of fictional people, seeded."""
    rng = random.Random(seed)
    names = [f"{f} {last}" for f in FIRST for last in LAST]
    rng.shuffle(names)
    return [(name, rng.choice(CITIES), rng.choice(JOBS)) for name in names[:n_people]]


def task_b_records(persons: Sequence[tuple[str, str, str]], chat: Any) -> list[dict[str, Any]]:
    """Task B: the facts asked in the chat format, answered in a sentence."""
    out = []
    for pid, (name, city, job) in enumerate(persons):
        out.append({"prompt": chat(f"Where was {name} born?"), "completion": f"{name} was born in {city}.",
                    "attribute": "city", "person_id": pid})
        out.append({"prompt": chat(f"What is {name}'s profession?"), "completion": f"{name} is a {job}.",
                    "attribute": "job", "person_id": pid})
    return out


def task_p_records(persons: Sequence[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Task P: the same facts as plain text, no chat template."""
    out = []
    for pid, (name, city, job) in enumerate(persons):
        out.append({"prompt": f"{name} was born in the city of", "completion": f" {city}", "attribute": "city",
                    "person_id": pid})
        out.append({"prompt": f"By profession, {name} is a", "completion": f" {job}", "attribute": "job",
                    "person_id": pid})
    return out


@dataclass(frozen=True)
class Problem:
    """One family-S word problem: its template and numbers (the identity that keeps the splits
    disjoint), the question and the worked completion."""

    template: str
    a: int
    b: int
    result: int
    question: str
    completion: str


def operand_pairs(op: str) -> list[tuple[int, int]]:
    """Every (a, b) a template with operation ``op`` may use."""
    if op == "+":
        return [(a, b) for a in range(2, 21) for b in range(2, 21)]
    if op == "-":
        return [(a, b) for a in range(5, 31) for b in range(2, a)]
    return [(a, b) for a in range(2, 13) for b in range(2, 13)]


def arithmetic_problems(n_train: int, n_held: int, seed: int) -> tuple[list[Problem], list[Problem]]:
    """Train and held-out word problems, disjoint by (template, a, b), seeded.

    Each template's (a, b) pairs are shuffled, then taken in turn over the templates (so every
    template and operation is equally represented); the first ``n_train`` are the training set,
    the next ``n_held`` the held-out set. Names and objects are drawn per problem.
    """
    rng = random.Random(seed)
    pools = []
    for template, op, _ in ARITH_TEMPLATES:
        pairs = operand_pairs(op)
        rng.shuffle(pairs)
        pools.append([(template, a, b) for a, b in pairs])
    keys = [pool[i] for i in range(max(map(len, pools))) for pool in pools if i < len(pool)]
    if n_train + n_held > len(keys):
        raise SystemExit(f"family S: {n_train} + {n_held} problems asked, {len(keys)} exist")
    texts = {template: (op, question) for template, op, question in ARITH_TEMPLATES}
    problems = []
    for template, a, b in keys[:n_train + n_held]:
        op, question = texts[template]
        result = ARITH_OPS[op][1](a, b)
        name, obj = rng.choice(FIRST), rng.choice(OBJECTS)
        problems.append(Problem(template, a, b, result, question.format(name=name, a=a, b=b, obj=obj),
                                f"{a} {op} {b} = {result}. Answer: {result}"))
    return problems[:n_train], problems[n_train:]


def task_s_records(problems: Sequence[Problem], chat: Any) -> list[dict[str, Any]]:
    """Family S records in the chat format (attribute: the operation)."""
    ops = {template: ARITH_OPS[op][0] for template, op, _ in ARITH_TEMPLATES}
    return [{"prompt": chat(p.question), "completion": p.completion, "attribute": ops[p.template], "person_id": i}
            for i, p in enumerate(problems)]


def final_answer(response: str) -> Optional[int]:
    """The integer right after the first ``Answer:`` in ``response``; None when there is none.

    >>> final_answer("7 + 5 = 12. Answer: 12"), final_answer("Answer: -3."), final_answer("It is 12.")
    (12, -3, None)
    """
    match = re.search(r"Answer:\s*(-?\d+)", response)
    return int(match.group(1)) if match else None


def number_splits(config: BenchConfig) -> tuple[list[int], list[int], list[int]]:
    """Disjoint train / held-out / recovery-pool numbers from 10..599."""
    numbers = list(range(10, 600))
    random.Random(config.seed).shuffle(numbers)
    a, h, p = config.a_train_numbers, config.a_held_numbers, config.a_pool_numbers
    return sorted(numbers[:a]), sorted(numbers[a:a + h]), sorted(numbers[a + h:a + h + p])


def write_jsonl(records: Sequence[dict[str, Any]], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


# --------------------------------------------------------------------------- evaluation

def load(path: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def perplexity(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 16) -> float:
    """exp(mean NLL per token) over ``texts`` (every token after the first)."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            ids = [tokenizer(t, add_special_tokens=False).input_ids for t in texts[start:start + batch_size]]
            width = max(map(len, ids))
            x = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(x)
            for i, row in enumerate(ids):
                x[i, :len(row)] = torch.tensor(row)
                mask[i, :len(row)] = 1
            logits = model(input_ids=x, attention_mask=mask).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
            keep = mask[:, 1:].bool()
            total += float(nll[keep].sum())
            count += int(keep.sum())
    return math.exp(total / count)


def sample_texts(model: Any, tokenizer: Any, openers: Sequence[str], new_tokens: int, seed: int) -> list[str]:
    """Paragraphs sampled from ``model`` (temperature 0.8, top-p 0.95, seeded), one per opener."""
    import torch

    ids = [tokenizer(o, add_special_tokens=False).input_ids for o in openers]
    width = max(map(len, ids))
    x = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(x)
    for i, row in enumerate(ids):
        x[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(input_ids=x, attention_mask=mask, do_sample=True, temperature=0.8, top_p=0.95,
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             pad_token_id=tokenizer.pad_token_id)
    return [o + tokenizer.decode(row[width:], skip_special_tokens=True) for o, row in zip(openers, out)]


@dataclass
class Sets:
    """The data and evaluation sets, fixed by the seed and the base model at the start."""

    a_train: list[dict[str, Any]]
    a_held: list[dict[str, Any]]
    a_pool: list[dict[str, Any]]
    a_held_raw: list[dict[str, Any]]
    a_held_chat: list[Any]
    b: list[dict[str, Any]]
    p: list[dict[str, Any]]
    texts: list[str]
    facts: list[dict[str, Any]]
    chat_held: list[Any]
    chat_pool: list[Any]
    chat_pool_answers: list[str]
    chat_unknown: list[Any]
    chat_unknown_groups: list[str]
    s_train: list[dict[str, Any]]
    s_held: list[dict[str, Any]]
    s_held_chat: list[Any]


def build_sets(base: Any, tokenizer: Any, config: BenchConfig) -> Sets:
    from spurious_diag.probes.chat_alignment import ChatQuestion, chat_alignment, chat_prompt
    from spurious_diag.training.evaluate import score_records

    def chat(question: str) -> str:
        return chat_prompt(tokenizer, question)

    train_n, held_n, pool_n = number_splits(config)
    persons = people(config.people, config.seed)
    texts = sample_texts(base, tokenizer, TEXT_OPENERS[:config.text_paragraphs], config.text_new_tokens, config.seed)

    capitals = list(CAPITALS.items())[:config.chat_capitals or None]
    raw = [{"prompt": f"The capital of {c} is", "completion": f" {v}"} for c, v in capitals]
    raw += [{"prompt": p, "completion": c} for p, c in RAW_OTHER]
    ok = score_records(base, tokenizer, raw, append_eos=False)["exact_match"].tolist()
    facts = [r for r, good in zip(raw, ok) if good]

    candidates = [ChatQuestion(f"What is the capital of {c}?", (v,), id=f"capital:{c}") for c, v in capitals]
    candidates += [ChatQuestion(q, a, id=f"other:{i}") for i, (q, a) in enumerate(CHAT_OTHER)]
    scored = chat_alignment(base, tokenizer, candidates, max_new_tokens=config.chat_max_new_tokens).per_question
    good = [(q, resp) for q, resp, aligned in zip(candidates, scored["response"], scored["aligned"]) if aligned]
    unknown = [q for q, ended, correct in zip(candidates, scored["ended_turn"], scored["correct"])
               if ended and not correct]
    raw_ok = {f"capital:{c}": good for (c, _), good in zip(capitals, ok)}
    groups = ["no raw-text version" if q.id not in raw_ok else
              "control: base wrong in chat, right as raw text" if raw_ok[q.id] else
              "control: base wrong in chat and as raw text" for q in unknown]
    random.Random(config.seed).shuffle(good)
    n_pool = max(config.chat_recovery_ns)
    n_held = min(config.chat_held, len(good) - n_pool)
    need = min(10, config.chat_held)
    if n_held < need:
        raise SystemExit(f"only {len(good)} chat questions pass the base filter; need {n_pool + need}")
    held, pool = good[:n_held], good[n_held:n_held + n_pool]
    s_train, s_held = arithmetic_problems(config.s_train, config.s_held, config.seed)
    return Sets(
        a_train=task_a_records(train_n, chat), a_held=task_a_records(held_n, chat),
        a_pool=task_a_records(pool_n, chat), a_held_raw=task_a_raw_records(held_n),
        a_held_chat=[ChatQuestion(q, (str(m),), id=f"{attr}:{n}") for n in held_n
                     for attr, q, m in (("after", f"What number comes after {n}?", n + 1),
                                        ("before", f"What number comes before {n}?", n - 1))],
        b=task_b_records(persons, chat), p=task_p_records(persons), texts=texts, facts=facts,
        chat_held=[q for q, _ in held], chat_pool=[q for q, _ in pool], chat_pool_answers=[r for _, r in pool],
        chat_unknown=unknown, chat_unknown_groups=groups,
        s_train=task_s_records(s_train, chat), s_held=task_s_records(s_held, chat),
        s_held_chat=[ChatQuestion(p.question, (str(p.result),), id=f"{p.template}:{p.a}:{p.b}") for p in s_held],
    )


COLUMNS = ["task_a", "task_a_any", "task_b", "task_p", "ppl", "facts", "chat_im_end", "chat_correct", "chat_aligned"]
GENERAL = ["ppl", "facts", "chat_im_end", "chat_correct", "chat_aligned"]
S_COLUMNS = ["s_answer", "s_em", "s_any"]


def arithmetic_scores(model: Any, tokenizer: Any, sets: Sets, config: BenchConfig) -> dict[str, Any]:
    """Family S's greedy scores on the held-out problems: ``s_answer`` (the integer after the first
    ``Answer:`` is right), ``s_any`` (the right number anywhere, as a whole word), and the per-problem
    frame ``_s`` (responses, parsed answers)."""
    from spurious_diag.probes.chat_alignment import chat_alignment

    scored = chat_alignment(model, tokenizer, sets.s_held_chat, max_new_tokens=config.s_new_tokens)
    frame = scored.per_question.copy()
    frame["expected"] = [int(q.answers[0]) for q in sets.s_held_chat]
    frame["parsed"] = frame["response"].map(final_answer)
    frame["answer_correct"] = frame["parsed"] == frame["expected"]
    return {"s_answer": float(frame["answer_correct"].mean()), "s_any": scored.correct_rate, "_s": frame}


def evaluate(model: Any, tokenizer: Any, sets: Sets, config: BenchConfig, tasks: Sequence[str]) -> dict[str, Any]:
    """One row of the results table (the task columns not in ``tasks`` are NaN)."""
    from spurious_diag.probes.chat_alignment import chat_alignment
    from spurious_diag.training.evaluate import evaluate_records

    records = {"task_a": sets.a_held, "task_b": sets.b, "task_p": sets.p}
    row: dict[str, Any] = {name: (evaluate_records(model, tokenizer, recs).exact_match if name in tasks else math.nan)
                           for name, recs in records.items()}
    # Knowledge regardless of format: the right number anywhere in the greedy chat answer.
    row["task_a_any"] = (chat_alignment(model, tokenizer, sets.a_held_chat, max_new_tokens=12).correct_rate
                         if "task_a" in tasks else math.nan)
    row.update({"s_answer": math.nan, "s_em": math.nan, "s_any": math.nan})
    if "task_s" in tasks:
        row["s_em"] = evaluate_records(model, tokenizer, sets.s_held).exact_match
        row.update(arithmetic_scores(model, tokenizer, sets, config))
    chat = chat_alignment(model, tokenizer, sets.chat_held, max_new_tokens=config.chat_max_new_tokens)
    row.update({
        "ppl": perplexity(model, tokenizer, sets.texts),
        "facts": evaluate_records(model, tokenizer, sets.facts, append_eos=False).exact_match,
        "chat_im_end": chat.end_turn_rate, "chat_correct": chat.correct_rate, "chat_aligned": chat.aligned_rate,
        "_chat": chat.per_question,
    })
    return row


# --------------------------------------------------------------------------- runs

def train(model_dir: Path, data: Path, out: Path, *, steps: int, lr: float, batch_size: int, seed: int,
          freeze: Optional[int], eval_path: Optional[Path] = None, eval_every: int = 0, save_every: int = 0) -> Any:
    """``spurious-diag train``'s engine; full-state ``checkpoints/checkpoint-N`` only with ``save_every``."""
    from spurious_diag.report.train import write_train_report
    from spurious_diag.training.finetune import finetune
    from spurious_diag.training.settings import FinetuneOptions, TrainSettings

    cfg = FinetuneOptions(settings=TrainSettings(steps=steps, lr=lr, batch_size=batch_size), freeze_layers=freeze,
                          seed=seed, eval_every=eval_every, save_every=save_every)
    result = finetune(str(model_dir), str(data), str(out), cfg, eval_path=str(eval_path) if eval_path else None)
    write_train_report(result)
    return result


def print_table(title: str, frame: Any, floatfmt: str = "{:.3f}") -> None:
    print(f"\n== {TITLE_PREFIX}{title}")
    print(frame.to_string(index=False, float_format=lambda v: floatfmt.format(v)), flush=True)


def run_family(family: str, start_dir: Path, data: Path, methods: Sequence[tuple[str, Optional[int]]], steps: int,
               lr: float, config: BenchConfig, work: Path, sets: Sets, tokenizer: Any, tasks: Sequence[str],
               keep: set[str], curve_path: Optional[Path]) -> tuple[dict[str, dict[str, Any]], list[Any], list[Any]]:
    """Train ``data`` from ``start_dir`` with each method, evaluate, and delete the models not in ``keep``."""
    import pandas as pd

    results, curves, timing = {}, [], []
    for label, k in methods:
        out = work / f"{family}-{'seq' if k is None else f'freeze{k}'}"
        out.mkdir(parents=True, exist_ok=True)
        res = train(start_dir, data, out, steps=steps, lr=lr, batch_size=config.batch_size, seed=config.seed,
                    freeze=k, eval_path=curve_path if config.curve_every else None, eval_every=config.curve_every,
                    save_every=config.map_every if (family == "B" and k is None) else 0)
        frac = res.freeze.trainable_fraction if res.freeze else 1.0
        timing.append({"run": f"{family} {label}", "trainable": frac, "s_per_step": res.seconds_per_step,
                       "final_loss": res.final_loss})
        if res.metrics is not None:
            curves.append(res.metrics[["step", "exact_match"]].assign(method=label))
        model = load(out)
        results[f"after {family}: {label}"] = evaluate(model, tokenizer, sets, config, tasks)
        del model
        gc.collect()
        if label not in keep:
            shutil.rmtree(out, ignore_errors=True)
        stamp(f"Task {family} {label}: {res.steps} steps, {res.seconds_per_step:.2f} s/step, trainable {frac:.1%}, "
              f"final loss {res.final_loss:.4f}; evaluated")
    frame = pd.concat(curves) if curves else None
    return results, ([frame] if frame is not None else []), timing


def freeze_vs_seq(table: Any) -> Any:
    """Per family and Freeze(k): its row minus the SEQ row of the same family."""
    import pandas as pd

    rows = []
    for family in ("B", "P"):
        seq = table[table["model"] == f"after {family}: SEQ"]
        if seq.empty:
            continue
        for _, row in table[table["model"].str.startswith(f"after {family}: Freeze")].iterrows():
            diff = {c: row[c] - seq[c].iloc[0] for c in COLUMNS}
            rows.append({"model": row["model"], **{c: v for c, v in diff.items() if not math.isnan(v)}})
    frame = pd.DataFrame(rows)
    return frame[["model"] + [c for c in COLUMNS if c in frame]] if rows else frame


def single_task_table(results: dict[str, dict[str, Any]]) -> Any:
    """Family S: the base (before), each method after S, then each Freeze row minus SEQ."""
    import pandas as pd

    columns = S_COLUMNS + GENERAL
    names = ["base"] + [n for n in results if n.startswith("after S: ")]
    rows = [{"model": n, **{c: results[n][c] for c in columns}} for n in names]
    seq = results.get("after S: SEQ")
    if seq is not None:
        rows += [{"model": f"{n.removeprefix('after S: ')} minus SEQ", **{c: results[n][c] - seq[c] for c in columns}}
                 for n in names if n.startswith("after S: Freeze")]
    return pd.DataFrame(rows, columns=["model"] + columns)


def chat_recovery(forgot: Any, sets: Sets, tokenizer: Any, config: BenchConfig) -> Any:
    """Recover ``forgot`` with n chat examples about other questions (the base's answers); score the held-out
    questions and the controls: questions the base answered wrong in chat, split by whether it completes the
    same fact as raw text (knowledge present) or not (knowledge absent: recovery must not make them right)."""
    import pandas as pd

    from spurious_diag.probes.chat_alignment import chat_alignment, chat_prompt
    from spurious_diag.training.settings import TrainSettings
    from spurious_diag.training.trainer import train_model

    questions = list(sets.chat_held) + list(sets.chat_unknown)
    groups = ["held-out: base right in chat"] * len(sets.chat_held) + list(sets.chat_unknown_groups)

    def scores(model: Any, n: int) -> list[dict[str, Any]]:
        frame = chat_alignment(model, tokenizer, questions, max_new_tokens=config.chat_max_new_tokens).per_question
        frame["group"] = groups
        return [{"n": n, "questions": group, "count": len(part), "im_end": part["ended_turn"].mean(),
                 "correct": part["correct"].mean(), "aligned": part["aligned"].mean()}
                for group, part in frame.groupby("group", sort=False)]

    rows = scores(forgot, 0)
    records = [{"prompt": chat_prompt(tokenizer, q.question), "completion": answer}
               for q, answer in zip(sets.chat_pool, sets.chat_pool_answers)]
    for n in config.chat_recovery_ns:
        trained = copy.deepcopy(forgot)
        train_model(trained, tokenizer, records[:n], TrainSettings(steps=config.recovery_steps, lr=config.recovery_lr,
                                                                   batch_size=min(config.batch_size, n)),
                    seed=config.seed)
        rows += scores(trained, n)
        del trained
        gc.collect()
    return pd.DataFrame(rows)


def diagnose_seq(base_dir: Path, a_dir: Path, seq_dir: Path, sets: Sets, tokenizer: Any, config: BenchConfig,
                 out: Path) -> dict[str, Any]:
    """Audit base → after A → after B(SEQ), then ``diagnose`` the SEQ model on Task A."""
    import pandas as pd

    from spurious_diag.probes.diagnose import diagnose
    from spurious_diag.probes.options import DiagnoseOptions, RecoverySettings
    from spurious_diag.report.common import summary_header
    from spurious_diag.report.diagnosis import SCHEMA_VERSION, diagnosis_content
    from spurious_diag.updates.engine import audit
    from spurious_diag.updates.options import AuditOptions
    from spurious_diag.updates.summary import per_layer_table

    result = audit([str(base_dir), str(a_dir), str(seq_dir)], AuditOptions(rank=8), progress=False)
    layers = per_layer_table(result.updates, result.pairs)
    layers.to_csv(out / "audit_per_layer.csv", index=False)
    sizes = layers[layers["update"].notna()].pivot(index="layer", columns="update", values="rms_mean")
    angles = layers[layers["update"].isna()].set_index("layer")["angle_mean_deg"]
    geo = pd.DataFrame({"layer": sizes.index.astype(int), "rms A (x1e4)": sizes[1].to_numpy() * 1e4,
                        "rms B-SEQ (x1e4)": sizes[2].to_numpy() * 1e4,
                        "angle A vs B (deg)": angles.reindex(sizes.index).to_numpy()})
    print_table("audit base -> after A -> after B(SEQ), rank 8: mean RMS of each update per layer "
                "(-1 = embeddings = LM head, 30 = final norm) and the mean principal angle between the updates",
                geo, "{:.2f}")
    stamp(f"audit done ({len(result.updates)} update rows, {len(result.pairs)} pair rows)")

    diagnosis = diagnose(str(a_dir), str(seq_dir), sets.a_held, base=str(base_dir), new_task_records=sets.b[:32],
                         pretraining_records=sets.a_held_raw, audit_result=result, tokenizer=tokenizer,
                         recovery_records=sets.a_pool,
                         options=DiagnoseOptions(
                             probes=("recovery", "format", "grafting", "shift", "geometry"),
                             recovery=RecoverySettings(ns=config.recovery_ns, steps=config.recovery_steps,
                                                       lr=config.recovery_lr, batch_size=config.batch_size,
                                                       seed=config.seed),
                             graft_ks=config.graft_ks, eval_batch_size=64, seed=config.seed,
                             max_candidates=config.format_candidates))
    for name, frame in diagnosis.frames.items():
        frame.to_csv(out / f"diagnose_{name}.csv", index=False)
    print(f"\n== {TITLE_PREFIX}diagnose(before=after A, after=after B SEQ) on Task A: verdict "
          f"{diagnosis.verdict.upper()}: {diagnosis.reason}")
    print(f"{TITLE_PREFIX}recommended freeze depth: {diagnosis.recommendation.k} ({diagnosis.recommendation.source}); "
          f"{diagnosis.recommendation.reasoning}")
    for name in ("accuracy", "recovery", "format_overall", "grafting"):
        if name in diagnosis.frames:
            frame = diagnosis.frames[name]
            if name == "grafting":
                frame = frame[[c for c in ("arm", "k", "old_acc", "new_acc", "restored", "status") if c in frame]]
            if name == "format_overall":
                frame = frame[[c for c in ("model", "format", "exact_match", "top1", "mrr") if c in frame]]
            print_table(f"diagnose: {name}", frame)
    shift = diagnosis.frames.get("residual_shift")
    if shift is not None:
        print_table("diagnose: residual shift before -> after (every 5th layer)", shift[shift["layer"] % 5 == 0])
    stamp("diagnose done")
    # summary.json keeps the diagnosis with its header, as Diagnosis.to_dict() gave it.
    return {"diagnosis": {**summary_header("diagnosis", SCHEMA_VERSION), **diagnosis_content(diagnosis)}}


def forgetting_map_seq(a_dir: Path, chain: Path, sets: Sets, tokenizer: Any, config: BenchConfig, out: Path
                       ) -> dict[str, Any]:
    """``diagnose_run`` over Task B's SEQ checkpoints on Task A: the forgetting map (layer × step), set
    beside the grafting result (``diagnose_grafting.csv``, when the diagnosis ran)."""
    from spurious_diag.probes.options import DiagnoseOptions
    from spurious_diag.probes.run_diagnosis import diagnose_run
    from spurious_diag.report.run_diagnosis import write_run_diagnosis

    maps = out / "forgetting_map"
    maps.mkdir(exist_ok=True)
    # The map alone: its probes (linear, recovery) are the diagnosis's business here.
    run = diagnose_run(a_dir, chain, sets.a_held, recovery_records=sets.a_pool, tokenizer=tokenizer,
                       options=DiagnoseOptions(probes=("grafting",), eval_batch_size=64, seed=config.seed,
                                               map_layers=config.map_layers),
                       every=config.map_stride, progress=False)
    write_run_diagnosis(run, maps)
    fmap = run.frames["forgetting_map"]
    last = int(fmap["step"].max())
    at = fmap[fmap["step"] == last].pivot(index="layer", columns="arm", values="restored")
    print_table(f"forgetting map of Task B (SEQ) on Task A at step {last} (Task A {run.summary['acc_last']:.3f}, "
                f"before {run.summary['acc_before']:.3f}): restored fraction per layer, one layer reverted "
                "(single) or the bottom layers through it (bottom); -1 = embeddings = LM head (tied), 30 = final "
                "norm + head", at.reset_index())
    by_step = fmap[fmap["arm"] == "single"].pivot(index="step", columns="layer", values="restored")
    halves = {"bottom half (-1..14)": [c for c in by_step.columns if c < 15],
              "top half (20..30)": [c for c in by_step.columns if c >= 15]}
    print_table("the most any single layer restores, per step and half of the depth",
                pd_frame({name: by_step[cols].max(axis=1) for name, cols in halves.items()}, by_step.index))
    graft_path = out / "diagnose_grafting.csv"
    agreement: dict[str, Any] = {"summary": run.summary}
    if graft_path.is_file():
        import pandas as pd

        graft = pd.read_csv(graft_path)
        bottom = fmap[(fmap["step"] == last) & (fmap["arm"] == "bottom")].set_index("layer")["restored"]
        rows = []
        for row in graft[graft["arm"] == "bottom"].itertuples():
            if row.k == 0:
                continue
            # graft bottom k = blocks 0..k-1 (embeddings tied to the head are never grafted); the map's
            # bottom arm through block k-1 also reverts the embeddings (= the head's matrix here)
            rows.append({"k": row.k, "graft_bottom_k_old_acc": row.old_acc,
                         "map_bottom_through_block_k-1_restored": bottom.get(row.k - 1)})
        table = pd.DataFrame(rows)
        print_table("grafting (the SEQ end model, blocks 0..k-1 from after A) beside the map's bottom arm at the "
                    "last step", table)
        agreement["grafting_vs_map"] = table.to_dict("records")
    stamp(f"forgetting map done ({len(run.settings['steps'])} checkpoints)")
    return {"forgetting_map": agreement}


def pd_frame(columns: dict[str, Any], index: Any) -> Any:
    import pandas as pd

    return pd.DataFrame(columns, index=index).reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="output dir (default runs/bench_smollm2_tasks, with --quick runs/bench_smollm2_tasks_quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny sizes (QUICK), Task A not cached; the numbers are not results")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="retrain Task A even when cached")
    parser.add_argument("--keep-models", default=None, help="keep the B and P models in this dir (else a temp dir)")
    for f in dataclasses.fields(BenchConfig):
        if f.type in ("int", "float"):
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=int if f.type == "int" else float,
                                default=None)
    parser.add_argument("--methods", default=None, help="comma list among SEQ,0,2,6 (default: SEQ and --freeze-ks)")
    parser.add_argument("--families", default="B,P",
                        help="comma list among B (item 1), P (item 2) and S (single-task SFT); default B,P")
    parser.add_argument("--skip-diagnose", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    logger.setLevel(logging.INFO)

    import pandas as pd
    import torch
    from transformers import AutoTokenizer

    global TITLE_PREFIX
    torch.set_num_threads(args.threads)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(BenchConfig)
                 if getattr(args, f.name, None) is not None}
    config = dataclasses.replace(BenchConfig(), **{**(QUICK if args.quick else {}), **overrides})
    out = Path(args.out or ("runs/bench_smollm2_tasks_quick" if args.quick else "runs/bench_smollm2_tasks"))
    out.mkdir(parents=True, exist_ok=True)
    families = args.families.split(",")
    unknown = [f for f in families if f not in ("B", "P", "S")]
    if unknown:
        parser.error(f"unknown families {unknown}; choose among B, P, S")
    if args.quick:
        TITLE_PREFIX = "[smoke test, not results] "
        stamp(SMOKE_LINE)
        (out / "SMOKE_TEST.txt").write_text(SMOKE_LINE + "\n", encoding="utf-8")
    stamp(f"config {dataclasses.asdict(config)}; threads {args.threads}; families {families}")

    base_dir = smollm2_hf_dir()
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = load(base_dir)
    sets = build_sets(base, tokenizer, config)
    data = out / "data"
    data.mkdir(exist_ok=True)
    for name in ("a_train", "a_held", "a_pool", "a_held_raw", "b", "p", "facts", "s_train", "s_held"):
        write_jsonl(getattr(sets, name), data / f"{name}.jsonl")
    write_jsonl([{"text": t} for t in sets.texts], data / "texts.jsonl")
    splits = ([(q, "held") for q in sets.chat_held] + [(q, "pool") for q in sets.chat_pool]
              + list(zip(sets.chat_unknown, sets.chat_unknown_groups)))
    write_jsonl([{"id": q.id, "question": q.question, "answers": list(q.answers), "split": split}
                 for q, split in splits], data / "chat_questions.jsonl")

    def mean_tokens(records: Sequence[dict[str, Any]]) -> float:
        return sum(len(tokenizer(r["prompt"] + r["completion"]).input_ids) + 1 for r in records) / len(records)

    stamp(f"data: Task A {len(sets.a_train)} train / {len(sets.a_held)} held-out / {len(sets.a_pool)} recovery "
          f"records (~{mean_tokens(sets.a_train):.0f} tokens); Task B {len(sets.b)} (~{mean_tokens(sets.b):.0f} "
          f"tokens); Task P {len(sets.p)} (~{mean_tokens(sets.p):.0f} tokens); family S {len(sets.s_train)} train "
          f"/ {len(sets.s_held)} held-out problems (~{mean_tokens(sets.s_train):.0f} tokens); "
          f"{len(sets.texts)} paragraphs; "
          f"{len(sets.facts)} raw facts kept; chat questions: {len(sets.chat_held)} held-out, "
          f"{len(sets.chat_pool)} recovery pool, {len(sets.chat_unknown)} the base got wrong (controls: "
          f"{sets.chat_unknown_groups.count('control: base wrong in chat and as raw text')} of them also wrong "
          f"as raw text)")

    all_tasks = ("task_a", "task_b", "task_p") + (("task_s",) if "S" in families else ())
    results: dict[str, dict[str, Any]] = {"base": evaluate(base, tokenizer, sets, config, all_tasks)}
    del base
    gc.collect()
    stamp("evaluated the base")

    methods: list[tuple[str, Optional[int]]] = [("SEQ", None)] + [(f"Freeze({k})", k) for k in config.freeze_ks]
    if args.methods:
        wanted = args.methods.split(",")
        methods = [(m, k) for m, k in methods if (m if k is None else str(k)) in wanted]
    keep_dir = Path(args.keep_models) if args.keep_models else None
    work_ctx = tempfile.TemporaryDirectory(prefix="bench-smollm2-") if keep_dir is None else None
    work = keep_dir if keep_dir is not None else Path(work_ctx.name)  # type: ignore[union-attr]
    keep = {m for m, _ in methods} if keep_dir is not None else {"SEQ"}
    # Family S: always SEQ, Freeze(1), Freeze(2), from the base; nothing downstream needs its models.
    s_methods: list[tuple[str, Optional[int]]] = [("SEQ", None), ("Freeze(1)", 1), ("Freeze(2)", 2)]
    s_keep = {m for m, _ in s_methods} if keep_dir is not None else set()
    summary: dict[str, Any] = {"config": dataclasses.asdict(config), "threads": args.threads, "quick": args.quick,
                               "families": families}
    curves: list[Any] = []
    timing: list[Any] = []
    try:
        a_dir = None
        if "B" in families:
            # Task A: once, fully, shared by every method; cached by its data and settings.
            key = cache_key(config.a_steps, config.a_lr, config.batch_size, config.seed, sets.a_train,
                              os.path.getsize(base_dir / "model.safetensors"))
            # --quick: never the cache (CI machines have none; tiny models must not land in it).
            a_dir = work / "A" if args.quick else CACHE / "bench_smollm2_tasks" / f"task_a-{key}"
            if args.fresh and a_dir.exists():
                shutil.rmtree(a_dir)
            if not (a_dir / "model.safetensors").is_file():
                a_dir.mkdir(parents=True, exist_ok=True)
                res = train(base_dir, data / "a_train.jsonl", a_dir, steps=config.a_steps, lr=config.a_lr,
                            batch_size=config.batch_size, seed=config.seed, freeze=None)
                timing.append({"run": "A (full)", "trainable": 1.0, "s_per_step": res.seconds_per_step,
                               "final_loss": res.final_loss})
                stamp(f"Task A trained: {res.steps} steps, {res.seconds_per_step:.2f} s/step, "
                      f"final loss {res.final_loss:.4f}")
            else:
                stamp(f"Task A model from the cache: {a_dir}")
            after_a = load(a_dir)
            results["after A"] = evaluate(after_a, tokenizer, sets, config, ("task_a", "task_b"))
            del after_a
            gc.collect()
            stamp("evaluated after A")
            res_b, curve_b, timing_b = run_family("B", a_dir, data / "b.jsonl", methods, config.b_steps, config.b_lr,
                                                  config, work, sets, tokenizer, ("task_a", "task_b"), keep,
                                                  data / "a_held.jsonl")
            results.update(res_b)
            curves += curve_b
            timing += timing_b
        if "P" in families:
            res_p, _, timing_p = run_family("P", base_dir, data / "p.jsonl", methods, config.p_steps, config.p_lr,
                                            dataclasses.replace(config, curve_every=0), work, sets, tokenizer,
                                            ("task_p",), keep, None)
            results.update(res_p)
            timing += timing_p
        if "S" in families:
            res_s, _, timing_s = run_family("S", base_dir, data / "s_train.jsonl", s_methods, config.s_steps,
                                            config.s_lr, dataclasses.replace(config, curve_every=0), work, sets,
                                            tokenizer, ("task_s",), s_keep, None)
            results.update(res_s)
            timing += timing_s

        columns = COLUMNS + (S_COLUMNS if "S" in families else [])
        table = pd.DataFrame([{"model": name, **{k: row[k] for k in columns}} for name, row in results.items()])
        table.to_csv(out / "results.csv", index=False)
        print_table("results: Task A (held-out numbers) / B / P greedy exact match; task_a_any: the right number "
                    "anywhere in the greedy answer, any format; ppl on text sampled from the base; facts: raw-text "
                    "facts the base got right; chat: held-out chat questions (im_end: ended the turn; correct: "
                    "contains the answer; aligned: both)"
                    + ("; s_*: family S, see its table below" if "S" in families else ""), table)
        summary["results"] = table.to_dict("records")
        pd.DataFrame(timing).to_csv(out / "timing.csv", index=False)
        print_table("training runs", pd.DataFrame(timing))
        if curves:
            wide = pd.concat(curves).pivot(index="step", columns="method", values="exact_match").reset_index()
            wide = wide[["step"] + [m for m, _ in methods if m in wide.columns]]
            wide.to_csv(out / "task_a_during_b.csv", index=False)
            print_table("Task A held-out exact match during Task B", wide)
            summary["task_a_during_b"] = wide.to_dict("records")
        deltas = freeze_vs_seq(table)
        if len(deltas):
            deltas.to_csv(out / "freeze_vs_seq.csv", index=False)
            print_table("Freeze(k) minus SEQ, same family (positive: Freeze keeps more / learns more; ppl: "
                        "negative is better)", deltas)
            summary["freeze_vs_seq"] = deltas.to_dict("records")
        pd.concat([row["_chat"].assign(model=name) for name, row in results.items()]).to_csv(
            out / "chat_responses.csv", index=False)
        if "S" in families:
            single = single_task_table(results)
            single.to_csv(out / "single_task.csv", index=False)
            print_table(f"single-task SFT on SmolLM2: SEQ vs Freeze(1), Freeze(2) (arithmetic word problems, "
                        f"{config.s_steps} steps at lr {config.s_lr:g} from the base; {len(sets.s_held)} held-out "
                        "problems). Target: s_answer = greedy answer after 'Answer:' right, s_em = teacher-forced "
                        "exact match of the worked completion, s_any = right number anywhere; general: ppl "
                        "(lower is better), facts, chat; 'minus SEQ' rows: Freeze minus SEQ", single)
            summary["single_task"] = single.to_dict("records")
            pd.concat([row["_s"].assign(model=name) for name, row in results.items() if "_s" in row]).to_csv(
                out / "single_task_responses.csv", index=False)

        if not args.skip_diagnose and a_dir is not None and (work / "B-seq" / "model.safetensors").is_file():
            summary.update(diagnose_seq(base_dir, a_dir, work / "B-seq", sets, tokenizer, config, out))
        if config.map_every and a_dir is not None and (work / "B-seq" / "checkpoints").is_dir():
            summary.update(forgetting_map_seq(a_dir, work / "B-seq" / "checkpoints", sets, tokenizer, config, out))
        if not args.skip_diagnose and (work / "P-seq" / "model.safetensors").is_file():
            forgot = load(work / "P-seq")
            rec = chat_recovery(forgot, sets, tokenizer, config)
            del forgot
            rec.to_csv(out / "chat_recovery.csv", index=False)
            print_table(f"chat-alignment recovery of P(SEQ): {config.recovery_steps} steps at lr "
                        f"{config.recovery_lr:g} on n chat examples about OTHER questions (the base's own answers)",
                        rec)
            summary["chat_recovery"] = rec.to_dict("records")
            stamp("chat recovery done")
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
    summary["seconds"] = time.time() - T0
    with open(out / "summary.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, default=str)
    stamp(f"done; tables in {out}")
    if args.quick:
        stamp(SMOKE_LINE)


if __name__ == "__main__":
    main()
