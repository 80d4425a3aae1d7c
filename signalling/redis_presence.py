"""Who is online on any node: the local Presence, mirrored between nodes through Redis.

Each node keeps the users connected to it in a Redis hash (user -> role, and a
change counter under `#seq`) that expires unless the node renews it, and
announces every change on a channel in the same transaction. Every node
mirrors the other nodes' hashes in memory, so `online()` and `count()` stay
synchronous and cost no round trip. A missed announcement shows as a gap in a
node's counter and its hash is read again; a dead node's hash expires and its
users drop out of every mirror within `redis.presence_ttl`; while Redis is
unreachable, other nodes' users are forgotten after the same time.

The takeover (a second tab or device replaces the first) spans nodes too: each user
has one key naming their current socket, swapped atomically by every new connection
(`claim`), so the new connection's node learns the socket it replaces, wherever it is.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from signalling.manager import (
    CONNECT_TIMEOUT,
    cancel_all,
    raise_if_cancelled,
    subscribed_messages,
    wait_for_event,
)
from signalling.presence import Participant, Presence
from signalling.presence_mirror import NodeMirror
from telemed.roles import Role

log = logging.getLogger("telemed.signalling.presence")
SEQ = "#seq"
REDIS_ERRORS = (aioredis.RedisError, OSError, asyncio.TimeoutError)
# Delete a user's session key only if it still names this socket; 1 when a newer one holds it.
RELEASE = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 0
end
if current then
  return 1
end
return 0
"""


class RedisPresence(Presence):
    """This node's sockets (as Presence) plus the users online on the other nodes."""

    def __init__(self, url: str, prefix: str, ttl: float) -> None:
        super().__init__()
        self.node = uuid.uuid4().hex[:12]
        self.url = url
        self.ttl = ttl
        self.channel = f"{prefix}:presence"
        self._nodes_key = f"{prefix}:presence:nodes"
        self._key_prefix = f"{prefix}:presence:node:"
        self._session_prefix = f"{prefix}:presence:user:"
        self.client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=max(1.0, ttl / 3),
            retry=Retry(NoBackoff(), 1),
            decode_responses=True,
        )
        # The other nodes, as last read or announced.
        self.mirror = NodeMirror()
        self._resyncing: set[str] = set()
        self._pending: dict[str, list[dict[str, Any]]] = {}
        # This node, as written to Redis.
        self._seq = 0
        self._written: dict[str, Role] = {}
        self._dirty: set[str] = set()
        self._rewrite = True
        self._wake = asyncio.Event()
        self._check_now = asyncio.Event()
        self._subscribed = False
        self._ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # The takeover: the order sockets were added here, and whether Redis recorded
        # each one's claim (False: it failed; absent: not claimed yet, or released).
        self._adds = itertools.count()
        self._order: dict[str, int] = {}
        self._recorded: dict[str, bool] = {}
        self._release = self.client.register_script(RELEASE)

    # --- the Presence interface --------------------------------------------------------

    def add(self, participant: Participant) -> list[str]:
        """Register a socket. It names no socket to replace: Redis decides that for every
        node once the socket is connected (`claim`)."""
        others = super().add(participant)
        self._order[participant.sid] = next(self._adds)
        if not others:
            self._changed(participant.user_id)
        return []

    async def claim(self, participant: Participant) -> list[str]:
        """Make this socket its user's one session (SET ... GET, atomic) and return the one
        it replaces, on whichever node. Redis orders concurrent connects: each gets the one
        before it, so the last survives. Without Redis, this node's older sockets."""
        sid, user = participant.sid, participant.user_id
        if sid not in self._by_sid:
            return []  # gone before it was welcomed
        mine = self._order[sid]
        older = {s for s in self.sids(user) if self._order.get(s, mine) < mine}
        # Past its token's expiry a socket cannot act (every event re-checks the token).
        life = max(participant.expires_at - participant.checked_at, timedelta(seconds=self.ttl))
        try:
            previous = await self.client.set(
                self._session_prefix + user, sid, get=True, px=int(life.total_seconds() * 1000)
            )
        except REDIS_ERRORS as exc:
            raise_if_cancelled()
            self._note(sid, recorded=False)
            log.warning("presence: takeover on this node only, redis failed (%s)", exc)
            return sorted(older)
        self._note(sid, recorded=True)
        # and this node's older sockets that connected while Redis was failing
        replaced = {s for s in older if self._recorded.get(s) is False}
        if previous is not None and previous != sid:
            replaced.add(str(previous))
        return sorted(replaced)

    async def release(self, participant: Participant) -> bool:
        """Delete the user's session key if it still names this socket; True when a newer
        connection holds it (the user is online elsewhere, not away). A socket whose
        claim Redis never recorded cannot tell: False, the mirror decides."""
        if not self._recorded.pop(participant.sid, False):
            return False
        try:
            held = await self._release(
                keys=[self._session_prefix + participant.user_id], args=[participant.sid]
            )
        except REDIS_ERRORS as exc:
            raise_if_cancelled()
            log.info("presence: cannot release a session (%s); it expires by itself", exc)
            return False
        return bool(held)

    def _note(self, sid: str, *, recorded: bool) -> None:
        if sid in self._by_sid:  # not if it left meanwhile: nothing would release it
            self._recorded[sid] = recorded

    def remove(self, sid: str) -> tuple[Participant | None, bool]:
        """Forget a socket; the user is gone only when no node has them any more."""
        self._order.pop(sid, None)
        participant, gone_here = super().remove(sid)
        if participant is None or not gone_here:
            return participant, False
        self._changed(participant.user_id)
        return participant, participant.user_id not in self.mirror.where

    def online(self, user_id: str | None) -> bool:
        return super().online(user_id) or (user_id is not None and user_id in self.mirror.where)

    def count(self, role: Role) -> int:
        """Users of a role online on any node (for the wait estimate)."""
        users = {p.user_id for p in self._by_sid.values() if p.role is role}
        for remote in self.mirror.remote.values():
            users.update(u for u, r in remote.items() if r is role)
        return len(users)

    def elsewhere(self, user_id: str) -> bool:
        """Whether another node has a connection of this user."""
        return user_id in self.mirror.where

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Announce this node and read the others; Redis being down does not stop a start."""
        for work in (self._listen_forever(), self._write_forever(), self._beat_forever()):
            self._spawn(work)
        self._wake.set()
        if not await wait_for_event(self._ready, 5):
            log.warning("presence: redis not reachable at start; other nodes unknown for now")

    async def stop(self) -> None:
        """Leave: other nodes drop this node's users at once rather than after the TTL."""
        await cancel_all(self._tasks)
        self._tasks.clear()
        try:
            async with asyncio.timeout(1.0):
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.delete(self._key(self.node))
                    pipe.zrem(self._nodes_key, self.node)
                    pipe.publish(self.channel, json.dumps({"node": self.node, "gone": True}))
                    await pipe.execute()
        except REDIS_ERRORS as exc:
            log.info("presence: could not say goodbye (%s); the TTL will", exc)
        await self.client.aclose()

    async def redis_up(self) -> bool:
        """One PING with a short timeout."""
        try:
            async with asyncio.timeout(1.0):
                return bool(await self.client.ping())
        except REDIS_ERRORS:
            return False

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _key(self, node: str) -> str:
        return self._key_prefix + node

    # --- this node -> Redis ------------------------------------------------------------

    def _changed(self, user_id: str) -> None:
        self._dirty.add(user_id)
        self._wake.set()

    def _role_here(self, user_id: str) -> Role | None:
        for sid in self._by_user.get(user_id, ()):
            return self._by_sid[sid].role
        return None

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._write()
            except REDIS_ERRORS as exc:
                raise_if_cancelled()
                self._rewrite = True  # unknown what landed: write it all when Redis is back
                log.warning("presence: cannot write to redis (%s)", exc)

    async def _write(self) -> None:
        """Write what changed here (or everything) and announce it, in one transaction."""
        if self._rewrite:
            self._dirty.clear()
            users = {p.user_id: p.role for p in self._by_sid.values()}
            put, gone, message = users, [], {"node": self.node, "reset": True}
        else:
            dirty, self._dirty = self._dirty, set()
            now = {u: self._role_here(u) for u in dirty}
            put = {u: r for u, r in now.items() if r is not None and self._written.get(u) != r}
            gone = [u for u, r in now.items() if r is None and u in self._written]
            if not put and not gone:
                return
            message = {
                "node": self.node,
                "set": {u: r.value for u, r in put.items()},
                "del": gone,
            }
        seq = self._seq + 1
        message["seq"] = seq
        key = self._key(self.node)
        async with self.client.pipeline(transaction=True) as pipe:
            if self._rewrite:
                pipe.delete(key)
            if put:
                pipe.hset(key, mapping={u: r.value for u, r in put.items()})
            if gone:
                pipe.hdel(key, *gone)
            pipe.hset(key, SEQ, seq)
            pipe.pexpire(key, int(self.ttl * 1000))
            pipe.zadd(self._nodes_key, {self.node: time.time()})
            pipe.publish(self.channel, json.dumps(message))
            await pipe.execute()
        self._seq = seq
        if self._rewrite:
            self._written = dict(put)
            self._rewrite = False
        else:
            self._written.update(put)
            for user in gone:
                self._written.pop(user, None)

    # --- Redis -> the mirror of the other nodes ----------------------------------------

    async def _beat_forever(self) -> None:
        """Renew this node's key; check every other node's counter, read the changed."""
        while True:
            try:
                await self._beat()
            except REDIS_ERRORS as exc:
                raise_if_cancelled()
                log.warning("presence: redis heartbeat failed (%s)", exc)
            self._forget_unconfirmed()
            await wait_for_event(self._check_now, self.ttl / 3)
            self._check_now.clear()
            raise_if_cancelled()

    async def _beat(self) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.pexpire(self._key(self.node), int(self.ttl * 1000))
            pipe.zadd(self._nodes_key, {self.node: time.time()})
            pipe.zremrangebyscore(self._nodes_key, 0, time.time() - 10 * self.ttl)
            pipe.zrange(self._nodes_key, 0, -1)
            alive, _, _, listed = await pipe.execute()
        if not alive:  # expired or Redis restarted empty: write everything again
            self._rewrite = True
            self._wake.set()
        others = [str(n) for n in listed if n != self.node]
        async with self.client.pipeline(transaction=False) as pipe:
            for node in others:
                pipe.hget(self._key(node), SEQ)
            seqs = await pipe.execute()
        now = asyncio.get_running_loop().time()
        reading = []
        for node, seq in zip(others, seqs, strict=True):
            if seq is None:
                self.mirror.drop(node)
                continue
            self.mirror.seen_at[node] = now
            if int(seq) != self.mirror.seq_of.get(node):
                reading.append(self._start_resync(node))
        await asyncio.gather(*(task for task in reading if task is not None))
        for node in set(self.mirror.remote) - set(others):
            self.mirror.drop(node)
        if self._subscribed:
            self._ready.set()

    def _start_resync(self, node: str) -> asyncio.Task[None] | None:
        """Read one node's hash again (a gap, a reset, a node not seen before); its
        announcements arriving meanwhile wait and are applied on top."""
        if node in self._resyncing:
            return None
        self._resyncing.add(node)
        task = asyncio.ensure_future(self._resync(node))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _resync(self, node: str) -> None:
        try:
            data = await self.client.hgetall(self._key(node))
        except REDIS_ERRORS as exc:
            raise_if_cancelled()
            log.warning("presence: cannot read node %s (%s)", node, exc)
            data = None  # the next heartbeat tries again
        finally:
            self._resyncing.discard(node)
            pending = self._pending.pop(node, [])
        if data is None:
            return
        raw = {str(k): str(v) for k, v in data.items()}
        seq = raw.pop(SEQ, None)
        if seq is None:  # gone: what it announced no longer matters
            self.mirror.drop(node)
            return
        self.mirror.replace(node, {u: Role(r) for u, r in raw.items()})
        self.mirror.seq_of[node] = int(seq)
        self.mirror.seen_at[node] = asyncio.get_running_loop().time()
        for message in pending:
            self._apply(message)

    async def _listen_forever(self) -> None:
        def subscribed() -> None:
            self._subscribed = True
            self._check_now.set()  # read everything again: announcements may be missed

        def lost() -> None:
            self._subscribed = False

        async for data in subscribed_messages(self.url, self.channel, subscribed, lost):
            try:
                message = json.loads(data)
                self._apply(message)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("presence: bad announcement ignored (%s)", exc)

    def _apply(self, message: dict[str, Any]) -> None:
        node = str(message["node"])
        if node == self.node:
            return
        if message.get("gone"):
            self.mirror.drop(node)
            return
        if node in self._resyncing:
            self._pending.setdefault(node, []).append(message)
            return
        if not self.mirror.apply(node, message, asyncio.get_running_loop().time()):
            self._pending.setdefault(node, []).append(message)
            self._start_resync(node)

    def _forget_unconfirmed(self) -> None:
        """Users of nodes not confirmed within the TTL (dead, or Redis down) are offline."""
        now = asyncio.get_running_loop().time()
        for node, seen in list(self.mirror.seen_at.items()):
            if now - seen > self.ttl:
                self.mirror.drop(node)
