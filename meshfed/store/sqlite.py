"""The embedded default store: one SQLite file under the data directory (stdlib sqlite3, WAL).

Threading: one dedicated thread owns the connection and runs every query and transaction;
coroutines hand it work with `run_in_executor`. Why not a lock around quick calls on the event
loop: a commit waits for the disk (fsync), which would stall every other task for that long.
Why one thread rather than a pool: a sqlite3 connection must not be used by two threads at once,
and with all writes in one thread each check-version-then-write transaction is atomic without
busy retries, and the revision counter and the watch fan-out advance in exactly commit order.
Reads queue behind writes, but each is a short indexed query. The keys of the types given as
`key_index` are also kept in memory, so that a read of keys none of which is stored (a new
proxy registering with zone-cp) skips the trip to the thread and back (issue 19, decision 192).

Watch: each transaction also appends its events to a `changes` table, so a watcher can replay
from a revision even after a restart. The table is compacted to a bounded size; the newest
`history` events are also kept in memory for replay. An exclusive lock file keeps a second
process (or a second open in this one) from writing the same database: it would reuse revisions.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import functools
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from meshfed.resources.model import Meta, Resource, now_rfc3339
from meshfed.store._batch import check_batch, check_expected, check_required
from meshfed.store._common import (
    CheckedListStore,
    ListQuery,
    check_key,
    check_mesh,
    encode_offset,
)
from meshfed.store._watch import DEFAULT_HISTORY, DEFAULT_MAX_PENDING, WatchHub
from meshfed.store.base import (
    EventKind,
    ListPage,
    NotFoundError,
    Requirement,
    StoreError,
    StoreKey,
    WatchEvent,
)

DB_FILE = "meshfed.db"
LOCK_FILE = "meshfed.db.lock"
SCHEMA_VERSION = 1

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    type TEXT NOT NULL,
    mesh TEXT NOT NULL,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    spec TEXT NOT NULL,
    creation_time TEXT NOT NULL,
    modification_time TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (type, mesh, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS resources_by_mesh ON resources (mesh);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    revision INTEGER NOT NULL,
    kind TEXT NOT NULL,
    type TEXT NOT NULL,
    mesh TEXT NOT NULL,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    spec TEXT NOT NULL,
    creation_time TEXT NOT NULL,
    modification_time TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

_COLUMNS = "type, mesh, name, labels, spec, creation_time, modification_time, version"
_NAMES_PER_QUERY = 500  # bound parameters per get_many query (SQLite allows 32766)

Row = tuple[str, str, str, str, str, str, str, int]


# A put of a batch, encoded on the caller's side: type, mesh, name, labels and spec as JSON,
# and the creation time the caller set ("" if none).
PutRow = tuple[str, str, str, str, str, str]


def _to_json(res: Resource) -> tuple[str, str]:
    try:
        labels = json.dumps(res.meta.labels, separators=(",", ":"))
        spec = json.dumps(res.spec, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{res.type} {res.name!r} cannot be stored as JSON: {exc}") from None
    return labels, spec


def _to_row(res: Resource) -> Row:
    labels, spec = _to_json(res)
    m = res.meta
    return (
        res.type,
        m.mesh,
        m.name,
        labels,
        spec,
        m.creation_time,
        m.modification_time,
        int(m.version),
    )


def _to_put_row(res: Resource) -> PutRow:
    """Encoding is also the snapshot: later changes to `res` cannot reach the store, and it is
    much cheaper than a deep copy (this is the hot path of a large KDS sync)."""
    return (res.type, res.meta.mesh, res.meta.name, *_to_json(res), res.meta.creation_time)


_decode = msgspec.json.Decoder().decode


def _loads(text: str) -> Any:
    """`json.loads`, about 3x faster (every watch event and read decodes rows; issue 19):
    msgspec reads the JSON `json.dumps` writes, and what it refuses (NaN, Infinity, a number
    beyond a float, which `json.dumps` writes and `json.loads` reads) goes to `json.loads`."""
    try:
        return _decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return json.loads(text)


def _from_row(row: Sequence[Any]) -> Resource:
    type_, mesh, name, labels, spec, created, modified, version = row
    meta = Meta(name, mesh, _loads(labels), created, modified, str(version))
    return Resource(type_, meta, _loads(spec))


class _Db:
    """Everything that touches the connection; runs only on the store's thread."""

    def __init__(
        self, conn: sqlite3.Connection, history: int, key_index: Collection[str] = ()
    ) -> None:
        self.conn = conn
        self.history = history
        self.revision = self._state("revision")
        self.change_count: int = conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
        self.hub: WatchHub | None = None  # set by the store before the first write
        # The stored keys of the `key_index` types, changed only on this thread, right after a
        # commit; `writes_done` counts the write jobs finished (failed ones too), after that.
        self.indexed = frozenset(key_index)
        self.keys: set[StoreKey] = set()
        for type_ in self.indexed:
            rows = conn.execute("SELECT mesh, name FROM resources WHERE type = ?", (type_,))
            self.keys.update((type_, mesh, name) for mesh, name in rows)
        self.writes_done = 0

    @classmethod
    def open(cls, path: Path, history: int, key_index: Collection[str] = ()) -> _Db:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                raise StoreError(f"{path}: cannot switch the database to WAL mode")
            # In WAL mode NORMAL survives a crash of this process; after a power loss or an
            # OS crash the last few commits may roll back, but the file stays consistent.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path} has schema version {version}; this meshfed knows up to "
                    f"{SCHEMA_VERSION}: upgrade meshfed"
                )
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            return cls(conn, history, key_index)
        except BaseException:
            conn.close()
            raise

    def _state(self, key: str) -> int:
        row = self.conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_state(self, key: str, value: int) -> None:
        self.conn.execute(
            "INSERT INTO state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def recent_events(self) -> tuple[list[WatchEvent], int]:
        """The newest `history` logged events and the revision through which older ones are gone."""
        rows = self.conn.execute(
            f"SELECT seq, revision, kind, {_COLUMNS} FROM changes ORDER BY seq DESC LIMIT ?",
            (self.history,),
        ).fetchall()
        rows.reverse()
        compacted = self._state("compacted_through")
        first_seq = rows[0][0] if rows else None
        older = self.conn.execute(
            "SELECT MAX(revision) FROM changes WHERE ? IS NULL OR seq < ?", (first_seq, first_seq)
        ).fetchone()[0]
        if older is not None:
            compacted = max(compacted, int(older))
        events = [WatchEvent(EventKind(r[2]), _from_row(r[3:]), int(r[1])) for r in rows]
        return events, compacted

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front: the version check and the write can't split.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:  # the body failed, or COMMIT itself (disk full, I/O)
                self.conn.execute("ROLLBACK")
            raise

    def _stored(self, type_: str, mesh: str, name: str) -> Resource | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM resources WHERE type = ? AND mesh = ? AND name = ?",
            (type_, mesh, name),
        ).fetchone()
        return _from_row(row) if row else None

    def _log(
        self,
        revision: int,
        events: Sequence[tuple[EventKind, Resource]],
        rows: Sequence[Row] | None = None,
    ) -> None:
        """Appends to the change log and advances the revision, inside the open transaction.

        `rows`: the events' resources already encoded (one per event), so none is encoded twice."""
        if rows is None:
            rows = [_to_row(res) for _, res in events]
        self.conn.executemany(
            f"INSERT INTO changes (revision, kind, {_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(revision, kind.value, *row) for (kind, _), row in zip(events, rows, strict=True)],
        )
        self._set_state("revision", revision)
        self.change_count += len(events)
        # Trim in batches (at twice the bound) so most commits pay nothing for compaction.
        if self.change_count > 2 * self.history:
            keep_from = self.conn.execute(
                "SELECT MAX(seq) - ? FROM changes", (self.history,)
            ).fetchone()[0]
            dropped = self.conn.execute(
                "SELECT MAX(revision) FROM changes WHERE seq <= ?", (keep_from,)
            ).fetchone()[0]
            if dropped is not None:
                self.conn.execute("DELETE FROM changes WHERE seq <= ?", (keep_from,))
                self._set_state("compacted_through", int(dropped))
            self.change_count = self.history

    def _published(self, revision: int, events: Sequence[tuple[EventKind, Resource]]) -> None:
        """Runs after COMMIT on this thread, so watchers get commits in commit order."""
        self.revision = revision
        if self.indexed:
            for kind, res in events:
                if res.type in self.indexed:
                    key = (res.type, res.meta.mesh, res.meta.name)
                    if kind is EventKind.PUT:
                        self.keys.add(key)
                    else:
                        self.keys.discard(key)
        if self.hub is not None:
            self.hub.publish([WatchEvent(kind, res, revision) for kind, res in events])

    def counted_write(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Runs a write job and then counts it done, whether it succeeded or not."""
        try:
            return fn(*args)
        finally:
            self.writes_done += 1

    def get(self, type_: str, mesh: str, name: str) -> Resource:
        found = self._stored(type_, mesh, name)
        if found is None:
            raise NotFoundError(type_, mesh, name)
        return found

    def get_many(self, keys: Sequence[StoreKey]) -> dict[StoreKey, Resource]:
        """One indexed query per (type, mesh) and chunk of names: a KDS apply of thousands of
        keys reads exactly those rows, not the whole type."""
        names: dict[tuple[str, str], list[str]] = {}
        for type_, mesh, name in dict.fromkeys(keys):
            names.setdefault((type_, mesh), []).append(name)
        found: dict[StoreKey, Resource] = {}
        for (type_, mesh), group in names.items():
            for start in range(0, len(group), _NAMES_PER_QUERY):
                chunk = group[start : start + _NAMES_PER_QUERY]
                marks = ",".join("?" * len(chunk))
                rows = self.conn.execute(
                    f"SELECT {_COLUMNS} FROM resources "
                    f"WHERE type = ? AND mesh = ? AND name IN ({marks})",
                    (type_, mesh, *chunk),
                ).fetchall()
                for row in rows:
                    found[(type_, mesh, row[2])] = _from_row(row)
        return found

    def list(self, query: ListQuery) -> ListPage:
        where, params = ["type = ?"], [query.type]
        if query.mesh is not None:
            where.append("mesh = ?")
            params.append(query.mesh)
        if query.name_contains:
            where.append("instr(name, ?) > 0")  # a plain substring: no LIKE wildcards to escape
            params.append(query.name_contains)
        for key, value in (query.labels or {}).items():
            where.append(
                "EXISTS (SELECT 1 FROM json_each(resources.labels) AS l "
                "WHERE l.key = ? AND l.value = ?)"
            )
            params += [key, value]
        cond = " AND ".join(where)
        size = query.size
        count = -1  # everything from the start is read below: no second scan to count it
        if size is not None or query.after is not None:
            total = self.conn.execute(f"SELECT COUNT(*) FROM resources WHERE {cond}", params)
            count = total.fetchone()[0]
        page_params: list[Any] = list(params)
        if query.after is not None:
            cond += " AND (mesh, name) > (?, ?)"
            page_params += query.after
        sql = f"SELECT {_COLUMNS} FROM resources WHERE {cond} ORDER BY mesh, name"
        if size is not None:
            sql += " LIMIT ?"
            page_params.append(size + 1)  # one more tells whether another page follows
        items = [_from_row(r) for r in self.conn.execute(sql, page_params).fetchall()]
        if count < 0:
            count = len(items)
        if size is None or len(items) <= size:
            return ListPage(items, count, None)
        items = items[:size]
        return ListPage(items, count, encode_offset(items[-1].meta.mesh, items[-1].meta.name))

    def _stored_column(self, column: str, type_: str, mesh: str, name: str) -> Any:
        row = self.conn.execute(
            f"SELECT {column} FROM resources WHERE type = ? AND mesh = ? AND name = ?",
            (type_, mesh, name),
        ).fetchone()
        return None if row is None else row[0]

    def write_batch(
        self,
        puts: Sequence[PutRow],
        deletes: Sequence[StoreKey],
        expected: Mapping[StoreKey, str | None],
        require: Sequence[Requirement],
    ) -> builtins.list[Row]:
        """Returns the stored rows of the puts. Works on encoded rows, not Resources: decoding
        a row is a fraction of the cost of copying a resource."""
        revision = self.revision + 1
        now = now_rfc3339()
        with self._transaction():
            for key in expected.keys() - {put[:3] for put in puts}:  # the deletes' expectations
                stored = self._stored_column("version", *key)
                check_expected(key, expected[key], None if stored is None else str(stored))
            for req in require:
                stored_version = self._stored_column("version", *req[:3])
                check_required(req, None if stored_version is None else str(stored_version))
            rows: list[Row] = []
            for type_, mesh, name, labels, spec, created in puts:
                found = self.conn.execute(
                    "SELECT version, creation_time FROM resources "
                    "WHERE type = ? AND mesh = ? AND name = ?",
                    (type_, mesh, name),
                ).fetchone()
                key = (type_, mesh, name)
                if key in expected:
                    check_expected(key, expected[key], None if found is None else str(found[0]))
                # A replace keeps the stored creation time; a new one keeps the caller's, if set.
                created = found[1] if found is not None else created or now
                rows.append((type_, mesh, name, labels, spec, created, now, revision))
            self.conn.executemany(
                f"INSERT OR REPLACE INTO resources ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", rows
            )
            deleted: list[Resource] = []
            for type_, mesh, name in deletes:
                current = self._stored(type_, mesh, name)
                if current is not None:
                    deleted.append(current)
                    self.conn.execute(
                        "DELETE FROM resources WHERE type = ? AND mesh = ? AND name = ?",
                        (type_, mesh, name),
                    )
            events = [(EventKind.PUT, _from_row(row)) for row in rows]
            events += [(EventKind.DELETE, res) for res in deleted]
            if not events:
                return []
            self._log(revision, events, [*rows, *map(_to_row, deleted)])
        self._published(revision, events)
        return rows

    def delete_mesh_scoped(self, mesh: str) -> int:
        revision = self.revision + 1
        with self._transaction():
            rows = self.conn.execute(
                f"SELECT {_COLUMNS} FROM resources WHERE mesh = ? ORDER BY type, name", (mesh,)
            ).fetchall()
            if not rows:
                return 0
            events = [(EventKind.DELETE, _from_row(r)) for r in rows]
            self.conn.execute("DELETE FROM resources WHERE mesh = ?", (mesh,))
            self._log(revision, events)  # one transaction: one revision, like an etcd txn
        self._published(revision, events)
        return len(events)


class SqliteStore(CheckedListStore):
    def __init__(self, db: _Db, executor: ThreadPoolExecutor, hub: WatchHub, lock_fd: int) -> None:
        """Use `SqliteStore.open`."""
        self._db = db
        self._executor = executor
        self._hub = hub
        self._lock_fd = lock_fd
        self._closed = False
        self._writes_submitted = 0  # changed on the event loop only; see `_known_absent`

    @classmethod
    async def open(
        cls,
        data_dir: Path,
        *,
        history: int = DEFAULT_HISTORY,
        max_pending: int = DEFAULT_MAX_PENDING,
        key_index: Collection[str] = (),
    ) -> SqliteStore:
        """Opens (creating if needed) `<data_dir>/meshfed.db`; `history` bounds the change log.
        `key_index`: types whose stored keys are also kept in memory, so that a `get_many` of
        keys none of which is stored answers without a trip to the store's thread."""
        if history < 0 or max_pending < 1:
            raise ValueError("history must be >= 0 and max_pending >= 1")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meshfed-sqlite")
        loop = asyncio.get_running_loop()
        try:
            opened = await loop.run_in_executor(
                executor, _open_locked, Path(data_dir), history, frozenset(key_index)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        db, lock_fd, events, compacted = opened
        hub = WatchHub(history, max_pending, initial=events, compacted_through=compacted)
        db.hub = hub
        return cls(db, executor, hub, lock_fd)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise StoreError("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        # If the caller is cancelled meanwhile, the job still finishes (and commits) on the
        # thread; only the caller stops waiting for it.
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite error: {exc}") from exc

    async def get(self, type_: str, mesh: str, name: str) -> Resource:
        check_key(type_, mesh, name)
        return await self._run(self._db.get, type_, mesh, name)

    async def _write(self, fn: Callable[..., _T], *args: Any) -> _T:
        """`_run` for a job that changes the store: counted, for `_known_absent`."""
        if self._closed:
            raise StoreError("the SQLite store is closed")
        self._writes_submitted += 1
        return await self._run(self._db.counted_write, fn, *args)

    def _known_absent(self, key: StoreKey) -> bool:
        """Whether `key` is certainly not stored, as a read queued now on the store's thread
        would find: every write submitted so far has finished (its keys are in the index, or
        it failed and changed nothing; this process is the database's only writer, decision
        4's lock file), and the key's type is indexed and its key not in the index. The index
        is changed only by a write job, so while none is pending it is not being changed."""
        db = self._db
        return (
            key[0] in db.indexed and db.writes_done == self._writes_submitted and key not in db.keys
        )

    async def get_many(self, keys: Sequence[StoreKey]) -> dict[StoreKey, Resource]:
        for key in keys:
            check_key(*key)
        if not keys:
            return {}
        if self._closed:
            raise StoreError("the SQLite store is closed")
        # A key known absent needs no read (issue 19: a new proxy's registration reads its
        # Dataplane and insight, which are not there; the trip to the thread and back is two
        # cross-thread wake-ups).
        wanted = [key for key in keys if not self._known_absent(key)]
        if not wanted:
            return {}
        return await self._run(self._db.get_many, wanted)

    async def _list(self, query: ListQuery) -> ListPage:
        return await self._run(self._db.list, query)

    async def write_batch(
        self,
        puts: Sequence[Resource],
        deletes: Sequence[StoreKey],
        *,
        expected: Mapping[StoreKey, str | None] | None = None,
        require: Sequence[Requirement] = (),
        copies: bool = True,
    ) -> builtins.list[Resource]:
        check_batch(puts, deletes, expected, require)
        if not puts and not deletes and not require:
            return []
        encoded = [_to_put_row(res) for res in puts]
        rows = await self._write(
            self._db.write_batch, encoded, list(deletes), dict(expected or {}), list(require)
        )
        if not copies:
            return []
        return [_from_row(row) for row in rows]  # copies: the watch history has its own

    async def delete_mesh_scoped(self, mesh: str) -> int:
        check_mesh(mesh)
        return await self._write(self._db.delete_mesh_scoped, mesh)

    def watch(
        self,
        from_revision: int | None = None,
        *,
        types: Collection[str] | None = None,
        copy: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        return self._hub.watch(from_revision, types=types, copy=copy)

    async def revision(self) -> int:
        return self._db.revision

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True  # refuse new work; jobs already queued run (and publish) first
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._db.conn.close)
        finally:
            self._hub.close()
            self._executor.shutdown(wait=False)
            os.close(self._lock_fd)


def _open_locked(
    data_dir: Path, history: int, key_index: Collection[str]
) -> tuple[_Db, int, list[WatchEvent], int]:
    """Locks the directory, opens the database, loads the replay history; or releases all."""
    lock_fd = _lock_data_dir(data_dir)
    path = data_dir / DB_FILE
    db: _Db | None = None
    try:
        db = _Db.open(path, history, key_index)
        events, compacted = db.recent_events()
        return db, lock_fd, events, compacted
    except BaseException as exc:
        if db is not None:
            db.conn.close()
        os.close(lock_fd)
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"cannot open SQLite store {path}: {exc}") from exc
        raise


def _lock_data_dir(data_dir: Path) -> int:
    """Creates the directory and takes its lock; the fd must stay open while the store is."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot use data directory {data_dir}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"{data_dir / DB_FILE} is already open (by another process, or earlier in this one)"
        ) from None
    return fd
