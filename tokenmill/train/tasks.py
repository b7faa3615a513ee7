"""Small synthetic tasks with checkable answers, for SFT, the reward model and RL; nothing downloaded.

    task = TASKS["arithmetic"]()
    sft, rl, heldout = (task.problems(s) for s in ("sft", "rl", "heldout"))   # [(prompt, answer)], disjoint
    task.check("59", "59") → True
    write_task_data(task, "data/")   # sft.jsonl (conversations), prefs.jsonl (pairs), prompts.jsonl

Every problem of a task is enumerated and split once by a fixed seed: the held-out problems
never appear in the SFT conversations, the preference pairs or the RL training prompts, so a
held-out accuracy measures generalisation, not recall. Preference pairs put the exact answer
against a wrong one or a badly formatted one (the right number, wrapped in words or repeated).
Sizes (sft / rl / held out): arithmetic, a + b with both 0..99: 5,000 / 3,000 / 2,000; reverse, three
of 15 words: 1,688 / 1,012 / 675.

Arithmetic was 0..19 (200 / 120 / 80): too few sums to learn addition from, so the demo's model
memorised them and missed held-out sums by one, and 80 held-out prompts could not tell RL from SFT
(standard error ~0.05). With 0..99, two-digit operands written with a leading zero (`07`), every
digit of every operand sits at the same place in the prompt; the demo's model then learns the units
digit from data rather than by heart (tune prompts of the rl split, 600 SFT steps: 0.64 exact; with
unpadded 0..29 the units digit stayed at 0.34, memorised).
"""

from __future__ import annotations

import json
import os
import random

SPLIT_SEED = 20241113  # fixed: the held-out problems are the same on every machine and run


SPLITS = {"heldout": 0.2, "rl": 0.3, "sft": 0.5}  # of a task's problems, in this order after the shuffle


class Task:
    name = "task"

    def all_problems(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def problems(self, split: str) -> list[tuple[str, str]]:
        """(prompt, answer) pairs of one split: "sft" (conversations and preference pairs), "rl"
        (RL training prompts) or "heldout" (evaluation only); disjoint and the same on every run."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        probs = self.all_problems()
        random.Random(SPLIT_SEED).shuffle(probs)
        start = 0
        for name, frac in SPLITS.items():
            n = round(len(probs) * frac)
            if name == split:
                return probs[start : start + n]
            start += n
        raise ValueError(f"no split named {split!r}; splits: {list(SPLITS)}")

    @staticmethod
    def check(response: str, answer: str) -> bool:
        """Exact answer: the reply, stripped of surrounding spaces, is the answer."""
        return response.strip() == answer

    def wrong_answer(self, prompt: str, answer: str, rng: random.Random) -> str:
        raise NotImplementedError

    def bad_format(self, answer: str, rng: random.Random) -> str:
        return rng.choice([f"The answer is {answer}.", f"{answer} {answer}", f"{answer}!!!", f"maybe {answer}",
                           "I don't know."])


class Arithmetic(Task):
    """`What is 07 + 35?` → `42`: operands 0..max_operand, written with leading zeros to the width of
    max_operand (so each digit has a fixed place); the answer as usual. Digits are single tokens in
    the demo tokenizer."""
    name = "arithmetic"

    def __init__(self, max_operand: int = 99):
        if not (isinstance(max_operand, int) and max_operand >= 1):
            raise ValueError(f"max_operand: a whole number of at least 1, not {max_operand!r}")
        self.max_operand = max_operand

    def all_problems(self) -> list[tuple[str, str]]:
        n, w = self.max_operand + 1, len(str(self.max_operand))
        return [(f"What is {a:0{w}d} + {b:0{w}d}?", str(a + b)) for a in range(n) for b in range(n)]

    def wrong_answer(self, prompt: str, answer: str, rng: random.Random) -> str:
        off = rng.choice([-10, -2, -1, 1, 2, 10])  # near misses: a dropped carry, an off-by-one
        return str(abs(int(answer) + off))


class Reverse(Task):
    """`Reverse the words: red cat sun` → `sun cat red`."""
    name = "reverse"
    WORDS = ("red", "cat", "sun", "big", "dog", "old", "sea", "map", "box", "car", "pen", "cup", "hat", "bed", "egg")

    def all_problems(self) -> list[tuple[str, str]]:
        w = self.WORDS
        return [(f"Reverse the words: {a} {b} {c}", f"{c} {b} {a}") for a in w for b in w for c in w]

    def wrong_answer(self, prompt: str, answer: str, rng: random.Random) -> str:
        words = answer.split()
        wrong = list(words)
        while wrong == words:  # the words in another order
            rng.shuffle(wrong)
            if len(set(words)) == 1:
                wrong = [rng.choice([x for x in self.WORDS if x != words[0]])] + words[1:]
        return " ".join(wrong)


TASKS: dict[str, type[Task]] = {"arithmetic": Arithmetic, "reverse": Reverse}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]()


def conversations(task: Task, seed: int = 0) -> list[dict]:
    """One conversation per training problem, seeded order."""
    probs = task.problems("sft")
    random.Random(seed).shuffle(probs)
    return [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]} for p, a in probs]


def preferences(task: Task, seed: int = 0) -> list[dict]:
    """One pair per training problem: the exact answer against a wrong (half) or badly formatted one."""
    rng = random.Random(seed + 1)
    pairs = []
    for p, a in task.problems("sft"):
        rejected = task.wrong_answer(p, a, rng) if rng.random() < 0.5 else task.bad_format(a, rng)
        pairs.append({"prompt": p, "chosen": a, "rejected": rejected})
    rng.shuffle(pairs)
    return pairs


def write_task_data(task: Task, out_dir: str, seed: int = 0) -> dict[str, str]:
    """sft.jsonl, prefs.jsonl and prompts.jsonl (the training problems, `{"prompt", "answer"}`) in out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    files = {
        "sft": conversations(task, seed),
        "prefs": preferences(task, seed),
        "prompts": [{"prompt": p, "answer": a} for p, a in task.problems("rl")],
    }
    paths = {}
    for name, rows in files.items():
        paths[name] = os.path.join(out_dir, f"{name}.jsonl")
        tmp = paths[name] + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        os.replace(tmp, paths[name])
    return paths
