// The queue as the console holds it (docs/console.md, "Queue deltas"): a snapshot replaces
// it (the queue:watch ack, queue:update), queue:joined / queue:left / queue:changed edit it.
// Order is (queued_at, consultation_id); positions come from the order and waits from
// queued_at against the server's clock, so nothing here trusts the stamps of an old snapshot.
// Pure: no DOM, so a page test can drive it directly.

function order(a, b) {
  const byTime = Date.parse(a.queued_at) - Date.parse(b.queued_at);
  if (byTime) return byTime;
  return a.consultation_id < b.consultation_id ? -1 : a.consultation_id > b.consultation_id ? 1 : 0;
}

/** A queue for a watcher; `mine(item)` says whether the item belongs in it (a doctor
 * sees items named for no doctor or for them). */
export function createQueue({ mine = () => true } = {}) {
  const items = new Map();
  let offset = null; // the server's clock minus ours (ms), when known

  function clock(serverTime, list = []) {
    const at = Date.parse(serverTime || "");
    if (Number.isFinite(at)) offset = at - Date.now();
    else if (list.length && list[0].waited_seconds != null) {
      // v1 queue:update has no server_time: queued_at + waited_seconds is the server's now.
      offset = Date.parse(list[0].queued_at) + list[0].waited_seconds * 1000 - Date.now();
    }
  }

  function put(item) {
    if (mine(item)) items.set(item.consultation_id, item);
    else items.delete(item.consultation_id);
  }

  return {
    /** A full snapshot: the list becomes exactly these items. */
    replace(list, serverTime) {
      clock(serverTime, list || []);
      items.clear();
      for (const item of list || []) put(item);
    },
    /** queue:joined: returns true when the item is new here. */
    join(item, serverTime) {
      clock(serverTime);
      const fresh = !items.has(item.consultation_id);
      put(item);
      return fresh && items.has(item.consultation_id);
    },
    /** queue:changed: the same waiting patient with new fields (added if missed). */
    change(item, serverTime) {
      clock(serverTime);
      put({ ...(items.get(item.consultation_id) || {}), ...item });
    },
    /** queue:left: returns the item that left, if it was here. */
    leave(consultationId, serverTime) {
      clock(serverTime);
      const item = items.get(consultationId);
      items.delete(consultationId);
      return item || null;
    },
    /** The items in order, each with its position (1-based). */
    list() {
      return [...items.values()].sort(order).map((item, i) => ({ ...item, position: i + 1 }));
    },
    get size() {
      return items.size;
    },
    get offset() {
      return offset;
    },
    /** Seconds an item has waited, at our clock's `now` (ms) moved to the server's. */
    waited(item, now = Date.now()) {
      const serverNow = now + (offset ?? 0);
      return Math.max(0, (serverNow - Date.parse(item.queued_at)) / 1000);
    },
  };
}
