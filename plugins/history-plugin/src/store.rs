//! The in-memory history: per routing key, the most recent messages, within fixed bounds.
//!
//! Three limits keep memory bounded whatever arrives on the eventbus:
//!
//! - **per key**, at most `size` messages (`--history-size`): the oldest goes first;
//! - **keys**, at most `max_keys` (default [`MAX_KEYS`]): the routing key is chosen by
//!   whoever publishes, so a publisher that puts a counter or a timestamp in its keys, or a
//!   flood of distinct keys, would otherwise grow the store without end. When a new key
//!   arrives at the cap, the key that was updated longest ago is forgotten — it is the
//!   stalest data, and an active key comes back with its next message;
//! - **bytes**, about `max_bytes` in all (default [`MAX_BYTES`]): a few keys with large
//!   messages can use as much memory as many keys with small ones. Over the budget, the
//!   oldest *history* entries go first, across all keys, so every key keeps its last message;
//!   only when the last messages alone exceed the budget are whole keys forgotten, again
//!   the longest-unchanged first. The newest message is always kept, however large (the
//!   broker's message size limit bounds it).
//!
//! Sizes are estimates: a message counts as its length as compact JSON plus a fixed
//! overhead per entry ([`ENTRY_OVERHEAD`]) and per key ([`KEY_OVERHEAD`]).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    io,
    sync::Arc,
    time::SystemTime,
};

use serde_json::{Map, Value};

/// Default cap on distinct routing keys.
pub const MAX_KEYS: usize = 1000;

/// Default memory budget for all messages, in bytes (64 MiB).
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

/// Bytes counted per stored message on top of its JSON length: the entry itself, its
/// index node and the allocations of a parsed JSON value.
pub const ENTRY_OVERHEAD: usize = 128;

/// Bytes counted per routing key on top of its length: the ring and the index nodes.
pub const KEY_OVERHEAD: usize = 256;

/// One received message.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// When the plugin received it.
    pub received: SystemTime,
    /// The message, any JSON value.
    pub message: Value,
    /// Global arrival number: orders entries across keys.
    seq: u64,
    /// What it counts against the byte budget.
    cost: usize,
}

/// What recording a message cost other keys, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evictions {
    /// Keys forgotten entirely (key cap or byte budget).
    pub keys: Vec<String>,
    /// History entries of other keys dropped for the byte budget.
    pub trimmed: usize,
}

impl Evictions {
    /// True when nothing but the ring of the recorded key changed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.trimmed == 0
    }
}

/// Recent messages per routing key. Not synchronised: the plugin wraps it in a mutex.
#[derive(Debug)]
pub struct Store {
    size: usize,
    max_keys: usize,
    max_bytes: usize,
    next_seq: u64,
    bytes: usize,
    /// Entries per key, oldest first; never empty.
    keys: HashMap<Arc<str>, VecDeque<Entry>>,
    /// Seq of each key's newest entry → key: the least recently updated key comes first.
    by_update: BTreeMap<u64, Arc<str>>,
    /// Seq of every entry that is not its key's newest → key: the oldest history first.
    history: BTreeMap<u64, Arc<str>>,
}

impl Store {
    /// A store keeping `size` messages per key, with the default key cap and byte budget.
    ///
    /// Panics if `size` is 0 (the plugin rejects that at startup).
    pub fn new(size: usize) -> Self {
        Store::with_limits(size, MAX_KEYS, MAX_BYTES)
    }

    /// A store with explicit limits. Panics if `size` or `max_keys` is 0.
    pub fn with_limits(size: usize, max_keys: usize, max_bytes: usize) -> Self {
        assert!(size >= 1, "history size must be at least 1");
        assert!(max_keys >= 1, "the key cap must be at least 1");
        Store {
            size,
            max_keys,
            max_bytes,
            next_seq: 0,
            bytes: 0,
            keys: HashMap::new(),
            by_update: BTreeMap::new(),
            history: BTreeMap::new(),
        }
    }

    /// Messages kept per key.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Number of routing keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True before the first message.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The estimated bytes in use (see the module docs).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records `message`, received at `received`, under `key`.
    pub fn record(&mut self, key: &str, message: Value, received: SystemTime) -> Evictions {
        let mut evictions = Evictions::default();
        let seq = self.next_seq;
        self.next_seq += 1;
        let cost = json_len(&message).saturating_add(ENTRY_OVERHEAD);
        let entry = Entry {
            received,
            message,
            seq,
            cost,
        };

        let key: Arc<str> = match self.keys.get_key_value(key) {
            Some((existing, _)) => Arc::clone(existing),
            None => {
                while self.keys.len() >= self.max_keys {
                    match self.evict_stalest(None) {
                        Some(evicted) => evictions.keys.push(evicted),
                        None => break,
                    }
                }
                let key: Arc<str> = Arc::from(key);
                self.bytes = self.bytes.saturating_add(key_cost(&key));
                self.keys.insert(Arc::clone(&key), VecDeque::new());
                key
            }
        };

        let ring = self.keys.get_mut(&key).expect("inserted above");
        if let Some(previous) = ring.back() {
            // The former newest entry becomes history.
            self.by_update.remove(&previous.seq);
            self.history.insert(previous.seq, Arc::clone(&key));
        }
        ring.push_back(entry);
        self.by_update.insert(seq, Arc::clone(&key));
        self.bytes = self.bytes.saturating_add(cost);
        while ring.len() > self.size {
            let dropped = ring.pop_front().expect("longer than size >= 1");
            self.history.remove(&dropped.seq);
            self.bytes = self.bytes.saturating_sub(dropped.cost);
        }

        while self.bytes > self.max_bytes {
            if let Some((_, owner)) = self.history.pop_first() {
                // The globally oldest history entry is the front of its key's ring.
                let ring = self.keys.get_mut(&owner).expect("history points at a key");
                let dropped = ring.pop_front().expect("history entries are in the ring");
                self.bytes = self.bytes.saturating_sub(dropped.cost);
                if *owner != *key {
                    evictions.trimmed += 1;
                }
                continue;
            }
            // Only last messages are left: forget the stalest keys, never this one.
            match self.evict_stalest(Some(&key)) {
                Some(evicted) => evictions.keys.push(evicted),
                None => break,
            }
        }
        evictions
    }

    /// Forgets the least recently updated key other than `keep`; returns its name.
    fn evict_stalest(&mut self, keep: Option<&str>) -> Option<String> {
        let (&seq, key) = self
            .by_update
            .iter()
            .find(|(_, key)| keep != Some(&***key))?;
        let key = Arc::clone(key);
        self.by_update.remove(&seq);
        let ring = self.keys.remove(&key).expect("indexed keys exist");
        for entry in &ring {
            self.history.remove(&entry.seq);
            self.bytes = self.bytes.saturating_sub(entry.cost);
        }
        self.bytes = self.bytes.saturating_sub(key_cost(&key));
        Some(key.to_string())
    }

    /// The last message of every key, as a JSON object with the keys in sorted order
    /// (whether or not serde_json preserves insertion order).
    pub fn last(&self) -> Map<String, Value> {
        let mut last: Vec<(&Arc<str>, &VecDeque<Entry>)> = self.keys.iter().collect();
        last.sort_unstable_by(|a, b| a.0.cmp(b.0));
        last.into_iter()
            .filter_map(|(key, ring)| Some((key.to_string(), ring.back()?.message.clone())))
            .collect()
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.keys.keys().map(|key| key.to_string()).collect();
        keys.sort_unstable();
        keys
    }

    /// The newest `per_key` messages of every key, as (key, entry), in the order they were
    /// received: recording them in this order into an empty store rebuilds this one (to
    /// within those `per_key`), which is how a hot swap hands the history over.
    pub fn in_order(&self, per_key: usize) -> Vec<(&str, &Entry)> {
        let mut all: Vec<(&str, &Entry)> = self
            .keys
            .iter()
            .flat_map(|(key, ring)| {
                let skip = ring.len().saturating_sub(per_key);
                ring.iter().skip(skip).map(move |entry| (&**key, entry))
            })
            .collect();
        all.sort_unstable_by_key(|(_, entry)| entry.seq);
        all
    }

    /// The newest `limit` messages of `key` (all of them for `None`), oldest first;
    /// `None` for a key never seen (or forgotten).
    pub fn recent(&self, key: &str, limit: Option<usize>) -> Option<Vec<Entry>> {
        let ring = self.keys.get(key)?;
        let skip = limit.map_or(0, |limit| ring.len().saturating_sub(limit));
        Some(ring.iter().skip(skip).cloned().collect())
    }
}

fn key_cost(key: &str) -> usize {
    key.len().saturating_add(KEY_OVERHEAD)
}

/// The length of `value` as compact JSON, without building the text.
fn json_len(value: &Value) -> usize {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a Value into a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn messages(store: &Store, key: &str, limit: Option<usize>) -> Vec<Value> {
        store
            .recent(key, limit)
            .expect("known key")
            .into_iter()
            .map(|entry| entry.message)
            .collect()
    }

    /// Recomputes the byte count and checks the indexes agree with the rings.
    fn check_invariants(store: &Store) {
        let mut bytes = 0;
        let mut newest = 0;
        let mut history = 0;
        for (key, ring) in &store.keys {
            assert!(!ring.is_empty(), "{key} has an empty ring");
            assert!(ring.len() <= store.size, "{key} holds {}", ring.len());
            bytes += key_cost(key);
            for (index, entry) in ring.iter().enumerate() {
                bytes += entry.cost;
                let index_of = if index + 1 == ring.len() {
                    newest += 1;
                    &store.by_update
                } else {
                    history += 1;
                    &store.history
                };
                assert_eq!(index_of.get(&entry.seq).map(|k| &**k), Some(&**key));
            }
            assert!(ring
                .iter()
                .zip(ring.iter().skip(1))
                .all(|(a, b)| a.seq < b.seq));
        }
        assert_eq!(store.bytes, bytes);
        assert_eq!(store.by_update.len(), newest);
        assert_eq!(store.history.len(), history);
        assert!(store.keys.len() <= store.max_keys);
    }

    #[test]
    fn any_json_value_per_key() {
        let mut store = Store::new(10);
        let values = [
            ("object", json!({"a": 1, "nested": {"b": [1, 2]}})),
            ("array", json!([1, "two", null])),
            ("string", json!("text")),
            ("number", json!(21.5)),
            ("bool", json!(false)),
            ("null", Value::Null),
        ];
        for (key, value) in &values {
            store.record(key, value.clone(), at(1));
        }
        let last = store.last();
        for (key, value) in &values {
            assert_eq!(&last[*key], value);
        }
        assert_eq!(
            store.keys(),
            ["array", "bool", "null", "number", "object", "string"]
        );
        let order: Vec<&String> = last.keys().collect();
        assert_eq!(
            order,
            ["array", "bool", "null", "number", "object", "string"]
        );
        check_invariants(&store);
    }

    #[test]
    fn last_is_the_newest_message() {
        let mut store = Store::new(5);
        store.record("a.b.c", json!(1), at(1));
        store.record("a.b.c", json!(2), at(2));
        store.record("other", json!("x"), at(3));
        assert_eq!(
            Value::Object(store.last()),
            json!({"a.b.c": 2, "other": "x"})
        );
        check_invariants(&store);
    }

    #[test]
    fn ring_keeps_the_newest_size_messages_oldest_first() {
        let mut store = Store::new(3);
        for n in 1..=5 {
            store.record("k", json!(n), at(n));
        }
        assert_eq!(messages(&store, "k", None), [json!(3), json!(4), json!(5)]);
        let received: Vec<_> = store
            .recent("k", None)
            .unwrap()
            .iter()
            .map(|e| e.received)
            .collect();
        assert_eq!(received, [at(3), at(4), at(5)]);
        assert_eq!(store.last()["k"], json!(5));
        check_invariants(&store);
    }

    #[test]
    fn size_one_keeps_only_the_last() {
        let mut store = Store::new(1);
        for n in 1..=4 {
            store.record("k", json!(n), at(n));
            check_invariants(&store);
        }
        assert_eq!(messages(&store, "k", None), [json!(4)]);
    }

    #[test]
    fn limit_takes_the_newest() {
        let mut store = Store::new(10);
        for n in 1..=4 {
            store.record("k", json!(n), at(n));
        }
        assert_eq!(messages(&store, "k", Some(2)), [json!(3), json!(4)]);
        assert_eq!(messages(&store, "k", Some(1)), [json!(4)]);
        assert_eq!(messages(&store, "k", Some(100)).len(), 4);
        assert!(messages(&store, "k", Some(0)).is_empty());
        assert!(store.recent("unknown", None).is_none());
    }

    #[test]
    fn keys_are_capped_and_the_stalest_goes_first() {
        let mut store = Store::with_limits(2, 3, usize::MAX);
        store.record("a", json!(1), at(1));
        store.record("b", json!(1), at(2));
        store.record("c", json!(1), at(3));
        // Updating "a" makes "b" the stalest.
        store.record("a", json!(2), at(4));
        let evictions = store.record("d", json!(1), at(5));
        assert_eq!(evictions.keys, ["b"]);
        assert_eq!(store.keys(), ["a", "c", "d"]);
        assert!(store.recent("b", None).is_none());
        assert_eq!(messages(&store, "a", None), [json!(1), json!(2)]);
        check_invariants(&store);
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_bounded() {
        let mut store = Store::with_limits(5, 100, usize::MAX);
        for n in 0..10_000u64 {
            store.record(&format!("flood.{n}"), json!(n), at(n));
        }
        assert_eq!(store.len(), 100);
        let keys = store.keys();
        assert!(keys.contains(&"flood.9999".to_owned()));
        assert!(!keys.contains(&"flood.9899".to_owned()));
        assert!(keys.contains(&"flood.9900".to_owned()));
        check_invariants(&store);
    }

    #[test]
    fn byte_budget_trims_the_oldest_history_first() {
        let big = json!("x".repeat(1000));
        let one = json_len(&big) + ENTRY_OVERHEAD;
        // Two keys and room for about five messages.
        let budget = 2 * key_cost("a") + 5 * one;
        let mut store = Store::with_limits(100, 10, budget);
        for n in 0..3 {
            store.record("a", big.clone(), at(n));
        }
        for n in 3..6 {
            store.record("b", big.clone(), at(n));
        }
        check_invariants(&store);
        assert!(store.bytes() <= budget);
        // Six messages did not fit: the oldest of "a" went, both keys keep their last.
        assert_eq!(store.recent("a", None).unwrap().len(), 2);
        assert_eq!(store.recent("b", None).unwrap().len(), 3);
        assert_eq!(store.recent("a", None).unwrap()[0].received, at(1));

        // Another message for "b" trims the next-oldest history entry, which is "a"'s.
        let evictions = store.record("b", big.clone(), at(6));
        assert_eq!(evictions.trimmed, 1);
        assert!(evictions.keys.is_empty());
        assert_eq!(store.recent("a", None).unwrap().len(), 1);
        assert_eq!(store.keys(), ["a", "b"]);
        check_invariants(&store);
    }

    #[test]
    fn byte_budget_forgets_stale_keys_when_last_values_do_not_fit() {
        let big = json!("y".repeat(1000));
        let one = json_len(&big) + ENTRY_OVERHEAD;
        let budget = 2 * (key_cost("k0") + one);
        let mut store = Store::with_limits(10, 100, budget);
        store.record("k0", big.clone(), at(0));
        store.record("k1", big.clone(), at(1));
        let evictions = store.record("k2", big.clone(), at(2));
        assert_eq!(evictions.keys, ["k0"]);
        assert_eq!(store.keys(), ["k1", "k2"]);
        assert!(store.bytes() <= budget);
        check_invariants(&store);
    }

    #[test]
    fn an_oversized_message_is_still_kept_as_the_last() {
        let mut store = Store::with_limits(10, 10, 100);
        store.record("small", json!(1), at(0));
        let huge = json!("z".repeat(10_000));
        let evictions = store.record("huge", huge.clone(), at(1));
        assert_eq!(evictions.keys, ["small"]);
        assert_eq!(store.last()["huge"], huge);
        store.record("huge", json!(2), at(2));
        assert_eq!(messages(&store, "huge", None), [json!(2)]);
        check_invariants(&store);
    }

    #[test]
    fn mixed_traffic_keeps_the_invariants() {
        let mut store = Store::with_limits(4, 7, 4000);
        for n in 0..2000u64 {
            let key = format!("k{}", (n * 7919) % 11);
            let message = json!({"n": n, "pad": "p".repeat((n % 97) as usize)});
            store.record(&key, message, at(n));
            if n % 50 == 0 {
                check_invariants(&store);
            }
        }
        check_invariants(&store);
        assert!(store.len() <= 7);
    }

    #[test]
    fn json_len_is_the_compact_length() {
        for value in [json!(null), json!({"a": [1, 2.5, "é"]}), json!("x")] {
            assert_eq!(json_len(&value), serde_json::to_vec(&value).unwrap().len());
        }
    }
}
