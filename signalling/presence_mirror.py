"""The other nodes' users as this node last read or heard them: a plain data structure,
no I/O, kept by `redis_presence.RedisPresence`."""

from __future__ import annotations

from typing import Any

from telemed.roles import Role


class NodeMirror:
    """Users per remote node, nodes per user, and each node's last counter and sighting."""

    def __init__(self) -> None:
        self.remote: dict[str, dict[str, Role]] = {}
        self.where: dict[str, set[str]] = {}
        self.seq_of: dict[str, int] = {}
        self.seen_at: dict[str, float] = {}

    def apply(self, node: str, message: dict[str, Any], now: float) -> bool:
        """Apply a node's announcement in order (one already known is ignored); False when
        it does not follow what is known (a gap, a reset, a node not seen before): the
        caller reads that node again."""
        seq = int(message["seq"])
        known = self.seq_of.get(node)
        if known is not None and seq <= known:
            return True
        if message.get("reset") or known is None or seq > known + 1:
            return False
        for user, role in message.get("set", {}).items():
            self.put(node, user, Role(role))
        for user in message.get("del", []):
            self.delete(node, user)
        self.seq_of[node] = seq
        self.seen_at[node] = now
        return True

    def put(self, node: str, user: str, role: Role) -> None:
        self.remote.setdefault(node, {})[user] = role
        self.where.setdefault(user, set()).add(node)

    def delete(self, node: str, user: str) -> None:
        self.remote.get(node, {}).pop(user, None)
        nodes = self.where.get(user)
        if nodes is not None:
            nodes.discard(node)
            if not nodes:
                del self.where[user]

    def replace(self, node: str, users: dict[str, Role]) -> None:
        for user in set(self.remote.get(node, {})) - set(users):
            self.delete(node, user)
        for user, role in users.items():
            self.put(node, user, role)

    def drop(self, node: str) -> None:
        self.replace(node, {})
        self.remote.pop(node, None)
        self.seq_of.pop(node, None)
        self.seen_at.pop(node, None)
