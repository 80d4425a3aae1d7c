"""The signal relay's participants cache: never serves a consultation's old counterpart
after a change it heard of, and forgets by itself changes it did not hear of."""

from __future__ import annotations

from signalling.participants import ParticipantsCache


class Ticking:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_stored_entry_is_served_until_the_consultation_changes() -> None:
    cache = ParticipantsCache()
    cache.put("c1", ("patient", "consultant"), cache.ticket())
    assert cache.get("c1") == ("patient", "consultant")
    cache.forget("c1")  # e.g. the transfer to the duty doctor was published
    assert cache.get("c1") is None


def test_a_read_that_raced_with_a_change_is_not_stored() -> None:
    """R-URG-5 in the relay: a read taken before the doctor's leg ended must not be kept."""
    cache = ParticipantsCache()
    ticket = cache.ticket()  # the relay starts reading the database ...
    cache.forget("c1")  # ... the leg ends meanwhile ...
    cache.put("c1", ("patient", "therapist"), ticket)  # ... so the old answer is dropped
    assert cache.get("c1") is None


def test_an_entry_expires_so_a_lost_change_notice_heals_by_itself() -> None:
    clock = Ticking()
    cache = ParticipantsCache(ttl=5.0, monotonic=clock, jitter=lambda: 0.0)
    cache.put("c1", ("patient", "consultant"), cache.ticket())
    clock.now = 5.0
    assert cache.get("c1") == ("patient", "consultant")
    clock.now = 5.01
    assert cache.get("c1") is None


def test_entries_stored_together_expire_apart_and_one_node_keeps_them() -> None:
    """Entries put at once would all be read again at once; each lives a random part of
    the lifetime less (at least half of it). Without a lifetime (one node, which hears
    every change itself) an entry stays until the consultation changes."""
    clock = Ticking()
    draws = iter([0.0, 0.5, 1.0])
    cache = ParticipantsCache(ttl=10.0, monotonic=clock, jitter=lambda: next(draws))
    for cid in ("c1", "c2", "c3"):
        cache.put(cid, ("p", "s"), cache.ticket())
    clock.now = 5.5
    assert [cache.get(c) is not None for c in ("c1", "c2", "c3")] == [True, True, False]
    clock.now = 7.6
    assert [cache.get(c) is not None for c in ("c1", "c2")] == [True, False]
    forever = ParticipantsCache(monotonic=clock)
    forever.put("c1", ("p", "s"), forever.ticket())
    clock.now = 1e9
    assert forever.get("c1") == ("p", "s")
    forever.forget("c1")
    assert forever.get("c1") is None


def test_clear_forgets_everything_and_memory_stays_bounded() -> None:
    cache = ParticipantsCache(max_entries=2)
    for cid in ("c1", "c2", "c3"):
        cache.put(cid, ("p", None), cache.ticket())
    assert cache.get("c3") == ("p", None) and cache.get("c1") is None
    cache.clear()
    assert cache.get("c3") is None
