"""The etcd store: what several global control plane replicas share.

Key layout, all under one prefix (default `/meshfed`), so several stores can share a cluster:

    <prefix>/meta                          {"layout": 1}; created once, its create_revision is
                                           the store's base revision (see Revisions)
    <prefix>/head                          rewritten by every commit: its mod_revision is the
                                           store's last commit
    <prefix>/resources/<type>/<mesh>/<name>
                                           JSON {type, mesh, name, labels, creationTime,
                                           modificationTime, spec}

`<mesh>` is `_` for global-scoped types (mesh ""); `%` and `/` inside a part are written
`%25` and `%2F`, and a mesh literally named `_` is written `%5F`.

Revisions: a resource's version is its key's mod_revision minus the base revision, and a watch
event's revision is etcd's revision minus the base. So a fresh store starts at revision 0 like
the other backends, and every replica computes the same versions. Revisions are not dense if
something else writes to the same etcd cluster, which the contract allows.

Writes are etcd transactions (create, update and delete are one-key `write_batch`es, in
meshfed.store.base). delete_mesh_scoped is one transaction of one range delete per type present
in the mesh, split in batches when there are more types than etcd allows operations in a
transaction.

write_batch reads the keys it puts or deletes (one read-only transaction per chunk), then writes
them in one transaction that compares each key with what was read (mod_revision, or
create_revision 0 for an absent key), so the kept creation times and skipped deletes are
right; a chunk that lost the race is read and tried again. etcd bounds a transaction
(--max-txn-ops, default 128, one of which is the head key; --max-request-bytes, default
1.5 MiB): a larger batch is split into consecutive transactions (`max_txn_ops`,
`max_txn_bytes`), each atomic with its own revision, committed in order. A reader may see the
first chunks of such a batch without the last; an `expected` mismatch found in a later chunk
leaves the earlier ones committed. Required keys (`require`) are read with every chunk and
compared (mod_revision) in its transaction: each chunk commits only while they hold.

Lists read the whole type (or type and mesh) range and filter, sort by (mesh, name) and page on
the client, with the same offsets as the other backends: exact, simple, and fine for control
plane sizes. Watches are etcd watches on the resources prefix (see `_etcd_watch`); etcd keeps
the history, and its compaction (the server's --auto-compaction-* flags) decides how far back a
watch can start: beyond it the watch ends with CompactedError, raised by `watch()` when the
store already knows about the compaction, otherwise by the first iteration.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aetcd import rpc

from meshfed.aio import wait_for
from meshfed.resources.model import Meta, Resource
from meshfed.store._batch import check_batch, check_expected, check_required
from meshfed.store._common import (
    CheckedListStore,
    ListQuery,
    check_key,
    check_mesh,
    page_of,
    stamped_new,
    stamped_update,
)
from meshfed.store._etcd_conn import DEFAULT_TIMEOUT, EtcdConnection, TlsFiles
from meshfed.store._etcd_keys import (
    KeyLayout,
    check_layout_marker,
    decode_value,
    encode_layout_marker,
    encode_value,
    prefix_range_end,
)
from meshfed.store._etcd_watch import EtcdWatch
from meshfed.store._watch import DEFAULT_MAX_PENDING, watched_types
from meshfed.store.base import (
    CompactedError,
    EventKind,
    ListPage,
    NotFoundError,
    Requirement,
    StoreError,
    StoreKey,
    WatchEvent,
)

log = logging.getLogger("meshfed.store.etcd")

DEFAULT_PREFIX = "/meshfed"
DEFAULT_MAX_TXN_OPS = 128  # etcd's --max-txn-ops default
# Below etcd's --max-request-bytes default (1.5 MiB), leaving room for keys and framing.
DEFAULT_MAX_TXN_BYTES = 1024 * 1024
_OP_OVERHEAD = 64  # bytes per operation besides its key and value, generously
CLOSE_DRAIN_TIMEOUT = 2.0  # how long close() lets watches catch up with our own writes

_DELETE = 1  # mvccpb.Event.EventType

# One operation of a batch: the key, and the resource to put there (None: delete it).
_BatchOp = tuple[StoreKey, Resource | None]


def _put(key: bytes, value: bytes) -> Any:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))


def _range_op(key: bytes) -> Any:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))


def _compare(key: bytes, target: str, value: int, result: str = "EQUAL") -> Any:
    field = {"CREATE": "create_revision", "MOD": "mod_revision"}[target]
    return rpc.Compare(
        key=key,
        target=getattr(rpc.Compare, target),
        result=getattr(rpc.Compare, result),
        **{field: value},
    )


class EtcdStore(CheckedListStore):
    def __init__(
        self,
        conn: EtcdConnection,
        layout: KeyLayout,
        *,
        base: int,
        known: int,
        max_pending: int,
        max_txn_ops: int,
        max_txn_bytes: int = DEFAULT_MAX_TXN_BYTES,
    ) -> None:
        self._conn = conn
        self._layout = layout
        self._base = base
        self._known = known  # newest etcd revision seen in any answer
        self._last_commit: int | None = None  # etcd revision of our own newest commit
        self._compacted_through = -1  # store revision; learned from etcd, -1 = none known
        self._max_pending = max_pending
        self._max_txn_ops = max_txn_ops
        self._max_txn_bytes = max_txn_bytes
        self._watches: set[EtcdWatch] = set()
        self._closed = False

    @classmethod
    async def open(
        cls,
        endpoints: str | Sequence[str],
        *,
        prefix: str = DEFAULT_PREFIX,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
        max_txn_bytes: int = DEFAULT_MAX_TXN_BYTES,
    ) -> EtcdStore:
        """Connects and prepares the prefix; raises StoreError if etcd cannot be used."""
        if max_pending < 1 or max_txn_ops < 2 or max_txn_bytes < 1:
            raise ValueError("max_pending and max_txn_bytes must be >= 1, max_txn_ops >= 2")
        layout = KeyLayout(prefix)
        tls = TlsFiles(ca_file, cert_file, key_file)
        conn = EtcdConnection(
            endpoints, username=username, password=password, tls=tls, timeout=timeout
        )
        try:
            await conn.open()
            base, known = await cls._prepare(conn, layout)
        except BaseException:
            await conn.close()
            raise
        log.debug("etcd store at %s under %s, base revision %d", conn.where(), layout.root, base)
        return cls(
            conn,
            layout,
            base=base,
            known=known,
            max_pending=max_pending,
            max_txn_ops=max_txn_ops,
            max_txn_bytes=max_txn_bytes,
        )

    @property
    def connection(self) -> EtcdConnection:
        """For leases and elections (`etcd_lease`) on the same cluster and credentials."""
        return self._conn

    @property
    def prefix(self) -> str:
        return self._layout.root

    @staticmethod
    async def _prepare(conn: EtcdConnection, layout: KeyLayout) -> tuple[int, int]:
        """Creates the meta and head keys on first use; returns (base, current) revisions."""
        resp = await conn.txn(
            rpc.TxnRequest(
                compare=[_compare(layout.meta_key, "CREATE", 0)],
                success=[
                    _put(layout.meta_key, encode_layout_marker()),
                    _put(layout.head_key, b""),
                ],
                failure=[_range_op(layout.meta_key)],
            ),
            "store initialisation",
        )
        if resp.succeeded:
            return resp.header.revision, resp.header.revision
        meta = resp.responses[0].response_range.kvs[0]
        try:
            check_layout_marker(meta.value)
        except ValueError as exc:
            raise StoreError(f"etcd prefix {layout.root!r}: {exc}") from None
        return meta.create_revision, resp.header.revision

    # --- helpers -------------------------------------------------------------------------------

    def _saw(self, header: Any) -> None:
        self._known = max(self._known, header.revision)

    def _committed(self, header: Any) -> str:
        self._saw(header)
        self._last_commit = header.revision
        return str(header.revision - self._base)

    def _decode(self, kv: Any) -> Resource:
        try:
            key = self._layout.parse(kv.key)
            return decode_value(key, kv.value, str(kv.mod_revision - self._base))
        except ValueError as exc:
            raise StoreError(
                f"etcd key {kv.key.decode(errors='replace')!r} holds invalid data: {exc}"
            ) from None

    async def _read(self, type_: str, mesh: str, name: str) -> tuple[Any, Resource]:
        check_key(type_, mesh, name)
        resp = await self._conn.range(rpc.RangeRequest(key=self._layout.key(type_, mesh, name)))
        self._saw(resp.header)
        if not resp.kvs:
            raise NotFoundError(type_, mesh, name)
        return resp.kvs[0], self._decode(resp.kvs[0])

    async def _txn(self, compare: list[Any], success: list[Any], what: str) -> Any:
        """Runs a transaction that also bumps the head key; returns the response."""
        request = rpc.TxnRequest(
            compare=compare, success=[*success, _put(self._layout.head_key, b"")]
        )
        resp = await self._conn.txn(request, what)
        self._saw(resp.header)
        return resp

    # --- reads ---------------------------------------------------------------------------------

    async def get(self, type_: str, mesh: str, name: str) -> Resource:
        return (await self._read(type_, mesh, name))[1]

    async def get_many(self, keys: Sequence[StoreKey]) -> dict[StoreKey, Resource]:
        """One read-only transaction per `max_txn_ops` keys."""
        unique = list(dict.fromkeys(keys))
        for key in unique:
            check_key(*key)
        found: dict[StoreKey, Resource] = {}
        for start in range(0, len(unique), self._max_txn_ops):
            current = await self._read_keys(unique[start : start + self._max_txn_ops])
            found.update((key, self._decode(kv)) for key, kv in current.items() if kv is not None)
        return found

    async def _list(self, query: ListQuery) -> ListPage:
        lay, type_, mesh = self._layout, query.type, query.mesh
        prefix = lay.type_prefix(type_) if mesh is None else lay.mesh_prefix(type_, mesh)
        resp = await self._conn.range(
            rpc.RangeRequest(key=prefix, range_end=prefix_range_end(prefix)), "list"
        )
        self._saw(resp.header)
        return page_of(map(self._decode, resp.kvs), query)

    async def revision(self) -> int:
        resp = await self._conn.range(rpc.RangeRequest(key=self._layout.head_key))
        self._saw(resp.header)
        if not resp.kvs:  # someone deleted it: the newest revision etcd reports still works
            return int(resp.header.revision - self._base)
        return int(resp.kvs[0].mod_revision - self._base)

    # --- writes --------------------------------------------------------------------------------

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
        if len(require) >= self._max_txn_ops:
            raise ValueError(
                f"{len(require)} requirements do not fit in one etcd transaction "
                f"(max_txn_ops {self._max_txn_ops})"
            )
        ops: list[_BatchOp] = [(res.key, res) for res in puts]
        ops += [(key, None) for key in deletes]
        stored: list[Resource] = []
        chunks = list(self._chunks(ops, require))
        if not chunks and require:  # nothing to write, but the caller asked
            await self._write_chunk([], {}, require)
        for chunk in chunks:
            stored += await self._write_chunk(chunk, expected or {}, require, copies)
        return stored

    def _chunks(
        self, ops: Sequence[_BatchOp], require: Sequence[Requirement]
    ) -> Iterable[builtins.list[_BatchOp]]:
        """Consecutive slices of the batch, each within etcd's transaction limits. Each
        transaction also compares (and first reads) every required key, and bumps the head."""
        per_txn = self._max_txn_ops - max(1, len(require))
        required = sum(len(self._layout.key(*r[:3])) + _OP_OVERHEAD for r in require)
        chunk: list[_BatchOp] = []
        used = required
        for key, res in ops:
            size = len(self._layout.key(*key)) + _OP_OVERHEAD
            if res is not None:
                size += len(encode_value(res))
            if chunk and (len(chunk) == per_txn or used + size > self._max_txn_bytes):
                yield chunk
                chunk, used = [], required
            chunk.append((key, res))
            used += size
        if chunk:
            yield chunk

    async def _read_keys(self, keys: Sequence[StoreKey]) -> dict[StoreKey, Any]:
        """The current key-values (None: absent), read in one read-only transaction."""
        request = rpc.TxnRequest(success=[_range_op(self._layout.key(*key)) for key in keys])
        resp = await self._conn.call(
            lambda s: s.kv.Txn, request, idempotent=True, what="batch read"
        )
        self._saw(resp.header)
        out: dict[StoreKey, Any] = {}
        for key, op in zip(keys, resp.responses, strict=True):
            kvs = op.response_range.kvs
            out[key] = kvs[0] if kvs else None
        return out

    async def _write_chunk(
        self,
        ops: Sequence[_BatchOp],
        expected: Mapping[StoreKey, str | None],
        require: Sequence[Requirement] = (),
        copies: bool = True,
    ) -> builtins.list[Resource]:
        """One transaction; read and tried again while a concurrent write gets in between.
        Returns copies of the stored puts ([] with `copies` False).

        A put expected absent is not read on the first try (one round trip for a `create`):
        the transaction's create_revision == 0 comparison checks it. Only after a failed
        commit is it read, to raise the error its expectation calls for."""
        unread = {key for key, res in ops if res is not None and expected.get(key, "") is None}
        while True:
            keys = [*(key for key, _ in ops if key not in unread), *(r[:3] for r in require)]
            current: dict[StoreKey, Any] = dict.fromkeys(unread)
            if keys:
                current |= await self._read_keys(keys)
            for key, kv in current.items():
                if key in expected:
                    version = None if kv is None else str(kv.mod_revision - self._base)
                    check_expected(key, expected[key], version)
            compare: list[Any] = []
            for req in require:
                kv = current[req[:3]]
                check_required(req, None if kv is None else str(kv.mod_revision - self._base))
                compare.append(_compare(self._layout.key(*req[:3]), "MOD", kv.mod_revision))
            success: list[Any] = []
            stored: list[Resource] = []
            for key, res in ops:
                kv, raw_key = current[key], self._layout.key(*key)
                if kv is None:
                    # Still absent at the commit: created, or (a delete) nothing to do.
                    compare.append(_compare(raw_key, "CREATE", 0))
                else:
                    compare.append(_compare(raw_key, "MOD", kv.mod_revision))
                if res is None:
                    if kv is not None:
                        delete = rpc.DeleteRangeRequest(key=raw_key)
                        success.append(rpc.RequestOp(request_delete_range=delete))
                    continue
                if kv is None:
                    out = stamped_new(res, 0)
                else:
                    out = stamped_update(res, self._decode(kv), 0)
                success.append(_put(raw_key, encode_value(out)))
                stored.append(out)
            if not success:
                return []  # only absent keys to delete: nothing to commit
            resp = await self._txn(compare, success, "batch write")
            if resp.succeeded:
                version = self._committed(resp.header)
                if not copies:
                    return []
                for out in stored:
                    out.meta.version = version
                return [out.clone() for out in stored]
            unread = set()

    async def delete_mesh_scoped(self, mesh: str) -> int:
        check_mesh(mesh)
        lay = self._layout
        resp = await self._conn.range(
            rpc.RangeRequest(
                key=lay.resources, range_end=prefix_range_end(lay.resources), keys_only=True
            ),
            "list for mesh deletion",
        )
        self._saw(resp.header)
        types = sorted(
            {
                parsed[0]
                for parsed in self._parse_keys(kv.key for kv in resp.kvs)
                if parsed[1] == mesh
            }
        )
        deleted = 0
        per_txn = self._max_txn_ops - 1  # one operation is the head key
        for start in range(0, len(types), per_txn):
            ops = []
            for type_ in types[start : start + per_txn]:
                prefix = lay.mesh_prefix(type_, mesh)
                delete = rpc.DeleteRangeRequest(key=prefix, range_end=prefix_range_end(prefix))
                ops.append(rpc.RequestOp(request_delete_range=delete))
            result = await self._txn([], ops, "mesh deletion")
            count = sum(r.response_delete_range.deleted for r in result.responses[:-1])
            if count:
                self._committed(result.header)
            deleted += count
        return deleted

    def _parse_keys(self, keys: Iterable[bytes]) -> Iterable[tuple[str, str, str]]:
        for key in keys:
            try:
                yield self._layout.parse(key)
            except ValueError:
                log.warning("ignoring foreign etcd key %r under the resources prefix", key)

    # --- watch ---------------------------------------------------------------------------------

    def watch(
        self,
        from_revision: int | None = None,
        *,
        types: Collection[str] | None = None,
        copy: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        """`copy` changes nothing here: every watch decodes its own events. `types` is applied
        to the keys before decoding; the stream still covers every type (see `_etcd_watch`)."""
        if from_revision is not None and from_revision < 0:
            raise ValueError(f"from_revision must be >= 0, got {from_revision}")
        wanted = watched_types(types)
        if from_revision is not None and from_revision < self._compacted_through:
            raise CompactedError(from_revision, self._compacted_through)
        # None = from the newest revision this store has seen: every write it returned before
        # this call is excluded, every later one included.
        start = self._known + 1 if from_revision is None else from_revision + self._base + 1
        prefix = self._layout.resources
        watch = EtcdWatch(
            self._conn,
            prefix,
            prefix_range_end(prefix),
            start=start,
            base=self._base,
            limit=self._max_pending,
            convert=self._event,
            on_compacted=self._learn_compaction,
            only=None if wanted is None else tuple(self._layout.type_prefix(t) for t in wanted),
        )
        if self._closed:
            watch.close()
        else:
            self._watches = {w for w in self._watches if not w.finished}
            self._watches.add(watch)
        return watch

    def _learn_compaction(self, through: int) -> None:
        self._compacted_through = max(self._compacted_through, through)

    def _event(self, ev: Any) -> WatchEvent | None:
        revision = ev.kv.mod_revision - self._base
        try:
            if ev.type != _DELETE:
                return WatchEvent(EventKind.PUT, self._decode(ev.kv), revision)
            if ev.HasField("prev_kv"):
                return WatchEvent(EventKind.DELETE, self._decode(ev.prev_kv), revision)
            # etcd no longer had the previous value (compacted): name what was deleted.
            type_, mesh, name = self._layout.parse(ev.kv.key)
            return WatchEvent(EventKind.DELETE, Resource(type_, Meta(name, mesh)), revision)
        except (StoreError, ValueError) as exc:
            log.error("skipping an etcd watch event: %s", exc)
            return None

    # --- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Lets watches deliver this store's own writes (bounded wait), then disconnects."""
        if self._closed:
            return
        self._closed = True
        watches = list(self._watches)
        self._watches.clear()
        for watch in watches:
            if self._last_commit is None:
                watch.close()
            else:
                watch.end_after(self._last_commit)
        if watches:
            with contextlib.suppress(TimeoutError):
                await wait_for(
                    asyncio.gather(*(w.drained.wait() for w in watches)), CLOSE_DRAIN_TIMEOUT
                )
        for watch in watches:
            watch.close()
        await self._conn.close()
