"""Built-in tasks: the registry, deterministic generation, train/eval separation, varied examples."""
import datetime
import json
import re

import pytest

from lorakit import RunConfig
from lorakit.data import DataError, generate_examples, get_task, list_tasks
from lorakit.data.tasks import extract_json


def test_list_tasks_has_default_and_a_second_skill():
    tasks = {t.name: t for t in list_tasks()}
    assert list_tasks()[0].name == RunConfig().dataset == "extract-json"
    assert {"extract-json", "date-iso", "sort-words", "arithmetic"} <= set(tasks)
    for t in tasks.values():
        assert t.description and t.metric
        ex = t.example()
        assert ex["prompt"] and ex["answer"]
        assert t.check(ex["answer"], ex["answer"])["correct"]  # the reference scores itself as correct


def test_get_task_names_the_tasks_when_unknown():
    assert get_task("date-iso").name == "date-iso"
    with pytest.raises(DataError) as err:
        get_task("date_iso")
    msg = str(err.value)
    assert msg.startswith("dataset:") and "did you mean 'date-iso'" in msg
    assert all(t.name in msg for t in list_tasks())


def test_extract_json_examples_are_valid_and_varied():
    train, _ = generate_examples("extract-json", 300, 0, seed=0)
    kinds = {"words": 0, "tomorrow": 0, "surname_first": 0, "title": 0, "distractor_city": 0}
    for r in train:
        obj = json.loads(r["answer"])
        text = r["prompt"].split("\n", 1)[1]
        assert list(obj) == ["name", "age", "city"] and isinstance(obj["age"], int)
        first, last = obj["name"].split()[0], obj["name"].split()[-1]
        assert first in text and last.lower() in text.lower() and obj["city"] in text
        if "tomorrow" in text.lower():
            kinds["tomorrow"] += 1
            assert str(obj["age"] + 1) in text  # "turns 35 tomorrow" -> 34
        elif extract_json.number_words(obj["age"]) in text.lower():
            kinds["words"] += 1
        else:
            assert re.search(rf"\b{obj['age']}\b", text)
        kinds["surname_first"] += f"{last}, " in text or f"{last.upper()}, " in text
        kinds["title"] += text.count("Dr. ") + text.count("Prof. ")
        kinds["distractor_city"] += sum(c in text for c in extract_json._CITIES) > 1
    assert all(n >= 15 for n in kinds.values()), kinds  # every harder shape is well represented
    sentences = [r["prompt"].split("\n", 1)[1] for r in train]
    assert len({s.split()[0] for s in sentences}) > 30  # many templates and names, not one shape
    assert sum(len(re.findall(r"\d+", s)) > 1 for s in sentences) > 50  # distractor numbers


@pytest.mark.parametrize("task", ["extract-json", "date-iso", "sort-words", "arithmetic"])
def test_train_and_eval_never_overlap(task):
    train, ev = generate_examples(task, 400, 64, seed=0)
    assert len(train) == 400 and len(ev) == 64
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in ev}
    assert len({r["prompt"] for r in train}) == 400  # no duplicates either


def test_date_iso_answers_are_the_dates_written():
    train, _ = generate_examples("date-iso", 200, 0, seed=0)
    shapes = set()
    for r in train:
        day = datetime.date.fromisoformat(r["answer"])
        text = r["prompt"].split("\n", 1)[1]
        assert str(day.year) in text and str(day.day) in text
        month = day.strftime("%B")
        assert month in text or month[:3] in text
        for weekday in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"):
            if weekday in text:
                assert weekday == day.strftime("%A")  # a weekday, when given, is the true one
        shape = re.sub(r"\d+(st|nd|rd|th)?", "N", text).replace(day.strftime("%A"), "W").replace(month, "M")
        shapes.add(shape.replace(month[:3], "m"))
    assert len(shapes) == 10, shapes  # every way of writing a date occurs


def test_eval_set_does_not_depend_on_train_size():
    _, ev_small = generate_examples("extract-json", 10, 16, seed=1)
    _, ev_big = generate_examples("extract-json", 300, 16, seed=1)
    assert ev_small == ev_big


def test_rows_are_single_user_turns():
    train, ev = generate_examples("arithmetic", 3, 2, seed=0)
    for r in train + ev:
        assert r["messages"] == [{"role": "user", "content": r["prompt"]}] and r["answer"]
