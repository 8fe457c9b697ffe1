"""Training data: built-in tasks, user datasets, the chat template and answer-only loss.

Every example is a conversation whose last turn is the answer; the loss covers the answer tokens
only. Sources (``RunConfig.dataset``):

- a built-in task (``list_tasks()``), generated deterministically from the seed; train and eval
  examples come from different random streams and never overlap;
- a local ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file with ``prompt`` and ``completion``
  columns, or a ``messages`` column (chat format; the last assistant turn is the answer), split
  deterministically with the seed; text files are UTF-8 unless ``data_encoding`` says otherwise;
  a bad row stops with its file, line and column named, or is left out and counted with
  ``on_bad_rows='skip'``;
- a Hugging Face Hub dataset id with the same columns (needs internet; fails fast without it).

For classification (``RunConfig.task``, a BERT's default) the data is a text and a label: the
built-in ``topic`` task, or a file with ``text`` (or ``prompt``) and ``label`` columns; data of
another kind than the run's task is refused, naming the tasks that fit.

Examples longer than ``seq_len`` are truncated from the end (the prompt start is kept) and counted
in ``DataBundle.stats``; an example whose answer is cut away entirely is dropped, and counted too.

The modules, in the order data flows through them (each imports only those before it):
``rows`` (an example row, the checks a user's record passes, ``DataError``) → ``readers`` (a file
to records, each with its line or row) → ``tasks`` (the built-in tasks, one module each) →
``sources`` (a ``dataset`` string to a task or to user rows; bad rows stop or are skipped) →
``chat`` (the chat template) → ``encoding`` (token ids, answer-only labels, truncation, the
collator) → ``bundle`` (``build_data``, ``preview``).
"""
from lorakit.data.bundle import DataBundle, build_data, preview
from lorakit.data.chat import end_of_turn, prompt_text
from lorakit.data.encoding import IGNORE_INDEX, encode_example
from lorakit.data.readers import FILE_SUFFIXES
from lorakit.data.rows import DataError
from lorakit.data.sources import data_labels, load_rows
from lorakit.data.tasks import TaskInfo, generate_examples, get_task, list_tasks, tasks_for

__all__ = [
    "DataBundle", "DataError", "FILE_SUFFIXES", "IGNORE_INDEX", "TaskInfo", "build_data", "data_labels",
    "encode_example",
    "end_of_turn", "generate_examples", "get_task", "list_tasks", "load_rows", "preview", "prompt_text", "tasks_for",
]
