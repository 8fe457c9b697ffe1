"""The run store: SQLite, so runs survive a kernel restart and can be compared later.

Import from here; the modules are, from the file up:

- :mod:`.errors`  — ``StoreError`` (names the file and why), ``RunNotFound``;
- :mod:`.schema`  — the tables, listed once, and their creation / upgrade; one write transaction;
- :mod:`.files`   — where the store lives (``default_store_path``) and which files are refused;
- :mod:`.orphans` — runs left 'running' by a process that has ended become 'stopped';
- :mod:`.rows`    — the row codec: a RunRecord to rows and back;
- :mod:`.runs`    — ``RunStore`` (save / load / records / delete / adapter_dir ...) and
  ``open_store``, how every ``store=`` argument becomes a RunStore;
- :mod:`.sink`    — ``StoreSink``, the events sink that records a run while it trains;
- :mod:`.damage`  — a run that cannot be read is set aside and named (``check``, ``repair``);
- :mod:`.paths`   — stored paths confined to the store's folders before anything is opened or deleted;
- :mod:`.merge`   — runs that move: ``merge`` another store (or an exported archive) into this one,
  ``export_runs`` packs chosen runs into a new store file or one archive;
- :mod:`.eval_cache` — the base model's "before" task result, kept once per key (``lookup``, ``remember``).
"""
from lorakit.store.checkpoints import step_of
from lorakit.store.damage import Damaged, DamagedRunsWarning
from lorakit.store.errors import RunNotFound, StoreError
from lorakit.store.files import DEFAULT_FILENAME, ENV_VAR, default_store_path
from lorakit.store.merge import MergeResult, export_runs, merge
from lorakit.store.orphans import ORPHAN_REASON
from lorakit.store.runs import RunStore, open_store, store_of
from lorakit.store.schema import APPLICATION, SCHEMA_VERSION
from lorakit.store.sink import StoreSink

__all__ = [
    "step_of", "store_of",
    "RunStore", "StoreError", "RunNotFound", "StoreSink", "open_store", "default_store_path", "SCHEMA_VERSION",
    "APPLICATION", "ENV_VAR", "DEFAULT_FILENAME", "ORPHAN_REASON", "Damaged", "DamagedRunsWarning",
    "merge", "export_runs", "MergeResult",
]
