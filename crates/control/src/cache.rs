//! The hot paths' in-process memory of stored records: a map whose entries expire after an age
//! (one for what was found, one for "there is none"), and are forgotten at once when the record
//! changes here or on another replica (see [`crate::Invalidation`]). It owns no policy: callers
//! decide what to keep, for how long, and what a change invalidates.

use std::hash::Hash;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use authsome_domain::clock::{Clock, CoarseInstant};
use authsome_domain::FastMap;

/// Most entries one map holds: past it, expired entries go first, then everything.
const MAX_ENTRIES: usize = 100_000;

struct Entry<V> {
    value: Option<Arc<V>>,
    at: CoarseInstant,
}

pub(crate) struct TtlMap<K, V> {
    entries: RwLock<FastMap<K, Entry<V>>>,
    found: Duration,
    absent: Duration,
}

impl<K: Hash + Eq, V> TtlMap<K, V> {
    /// Keeps what was found for `found`, and "there is none" for `absent`.
    pub(crate) fn new(found: Duration, absent: Duration) -> Self {
        Self {
            entries: RwLock::new(FastMap::default()),
            found,
            absent,
        }
    }

    fn fresh(&self, clock: &Clock, entry: &Entry<V>) -> bool {
        let ttl = if entry.value.is_some() {
            self.found
        } else {
            self.absent
        };
        clock.elapsed(entry.at) < ttl
    }

    /// `Some(entry)` on a fresh hit (the entry itself may be a remembered "there is none").
    pub(crate) fn get(&self, clock: &Clock, key: &K) -> Option<Option<Arc<V>>> {
        let entries = self.entries.read().ok()?;
        entries
            .get(key)
            .filter(|e| self.fresh(clock, e))
            .map(|e| e.value.clone())
    }

    pub(crate) fn put(&self, clock: &Clock, key: K, value: Option<Arc<V>>) {
        self.put_if(clock, key, value, || true);
    }

    /// Keeps `value` only if `still` says, under the map's lock, that nothing changed since it
    /// was loaded: an invalidation that raced the load wins over it.
    pub(crate) fn put_if(
        &self,
        clock: &Clock,
        key: K,
        value: Option<Arc<V>>,
        still: impl FnOnce() -> bool,
    ) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if !still() {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| self.fresh(clock, e));
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                value,
                at: clock.instant(),
            },
        );
    }

    pub(crate) fn remove(&self, key: &K) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(key);
        }
    }

    /// Forgets every entry for which `keep` says no.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&K, Option<&V>) -> bool) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|k, e| keep(k, e.value.as_deref()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_by_kind_and_are_forgotten_on_demand() {
        let clock = Clock::manual();
        let map: TtlMap<u32, &str> = TtlMap::new(Duration::from_secs(30), Duration::from_secs(5));
        map.put(&clock, 1, Some(Arc::new("one")));
        map.put(&clock, 2, None);
        assert_eq!(map.get(&clock, &1).unwrap().as_deref(), Some(&"one"));
        assert_eq!(map.get(&clock, &2), Some(None));
        assert!(map.get(&clock, &3).is_none());
        clock.advance(Duration::from_secs(6));
        assert!(map.get(&clock, &2).is_none(), "an absence is kept briefly");
        assert!(map.get(&clock, &1).is_some());
        clock.advance(Duration::from_secs(25));
        assert!(map.get(&clock, &1).is_none());
        map.put(&clock, 1, Some(Arc::new("one")));
        map.put(&clock, 4, Some(Arc::new("four")));
        map.remove(&1);
        assert!(map.get(&clock, &1).is_none());
        map.retain(|_, v| v != Some(&"four"));
        assert!(map.get(&clock, &4).is_none());
        map.put_if(&clock, 5, Some(Arc::new("five")), || false);
        assert!(map.get(&clock, &5).is_none(), "a raced load is not kept");
    }
}
