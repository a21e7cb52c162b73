//! The memory store's indexes: the sessions under each `sid` hash and each
//! `sub` hash.
//!
//! Nearly every `sid` has one session, and most `sub`s one or a few, so a
//! value's keys are held inline while there is one and in a map only from
//! the second on: a map per value cost about 450 bytes per session, a sixth
//! of a session's memory (`bench/memory.sh`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::session::id::StoreKey;

/// The keys under one index value, each with its datum (`()` for `sid`,
/// the creation time for `sub`).
enum Keys<V> {
    One(StoreKey, V),
    Many(HashMap<StoreKey, V>),
}

impl<V: Copy> Keys<V> {
    fn insert(&mut self, key: &StoreKey, v: V) {
        match self {
            Keys::One(k, old) if k == key => *old = v,
            Keys::One(k, old) => {
                let mut map = HashMap::with_capacity(2);
                map.insert(k.clone(), *old);
                map.insert(key.clone(), v);
                *self = Keys::Many(map);
            }
            Keys::Many(map) => {
                map.insert(key.clone(), v);
            }
        }
    }

    /// Removes `key`; `true` when no key is left.
    fn remove(&mut self, key: &StoreKey) -> bool {
        match self {
            Keys::One(k, _) => k == key,
            Keys::Many(map) => {
                map.remove(key);
                if map.len() > 1 {
                    return false;
                }
                let last = std::mem::take(map).into_iter().next();
                match last {
                    Some((k, v)) => {
                        *self = Keys::One(k, v);
                        false
                    }
                    None => true,
                }
            }
        }
    }

    fn to_vec(&self) -> Vec<(StoreKey, V)> {
        match self {
            Keys::One(k, v) => vec![(k.clone(), *v)],
            Keys::Many(map) => map.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }
}

/// Sessions by `sid` hash and by `sub` hash (with their creation times).
#[derive(Default)]
pub(super) struct Index {
    sid: HashMap<Arc<str>, Keys<()>>,
    sub: HashMap<Arc<str>, Keys<u64>>,
}

impl Index {
    /// Indexes the session `key`.
    pub(super) fn add(
        &mut self,
        key: &StoreKey,
        sid: Option<&Arc<str>>,
        sub: &Arc<str>,
        created_ms: u64,
    ) {
        if let Some(sid) = sid {
            match self.sid.get_mut(sid) {
                Some(keys) => keys.insert(key, ()),
                None => {
                    self.sid.insert(sid.clone(), Keys::One(key.clone(), ()));
                }
            }
        }
        match self.sub.get_mut(sub) {
            Some(keys) => keys.insert(key, created_ms),
            None => {
                self.sub
                    .insert(sub.clone(), Keys::One(key.clone(), created_ms));
            }
        }
    }

    /// Removes the session `key` from under its `sid` and `sub`.
    pub(super) fn remove(&mut self, key: &StoreKey, sid: Option<&Arc<str>>, sub: &Arc<str>) {
        if let Some(sid) = sid
            && self.sid.get_mut(sid).is_some_and(|keys| keys.remove(key))
        {
            self.sid.remove(sid);
        }
        if self.sub.get_mut(sub).is_some_and(|keys| keys.remove(key)) {
            self.sub.remove(sub);
        }
    }

    /// The sessions under a `sid` hash.
    pub(super) fn by_sid(&self, sid: &str) -> Vec<StoreKey> {
        self.sid.get(sid).map_or_else(Vec::new, |keys| {
            keys.to_vec().into_iter().map(|(k, ())| k).collect()
        })
    }

    /// The sessions under a `sub` hash, with their creation times.
    pub(super) fn by_sub(&self, sub: &str) -> Vec<(StoreKey, u64)> {
        self.sub.get(sub).map_or_else(Vec::new, Keys::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> StoreKey {
        StoreKey::from_stored(&format!("{}{}", "A".repeat(42), char::from(b'A' + n))).unwrap()
    }

    fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
        v.sort();
        v
    }

    #[test]
    fn one_then_many_then_none() {
        let (sid, sub): (Arc<str>, Arc<str>) = (Arc::from("sid-hash"), Arc::from("sub-hash"));
        let mut index = Index::default();
        index.add(&key(1), Some(&sid), &sub, 10);
        assert_eq!(index.by_sid("sid-hash"), vec![key(1)]);
        assert_eq!(index.by_sub("sub-hash"), vec![(key(1), 10)]);

        index.add(&key(2), Some(&sid), &sub, 20);
        index.add(&key(3), None, &sub, 30);
        assert_eq!(sorted(index.by_sid("sid-hash")), vec![key(1), key(2)]);
        assert_eq!(
            sorted(index.by_sub("sub-hash")),
            vec![(key(1), 10), (key(2), 20), (key(3), 30)]
        );

        index.remove(&key(1), Some(&sid), &sub);
        assert_eq!(index.by_sid("sid-hash"), vec![key(2)]);
        assert_eq!(
            sorted(index.by_sub("sub-hash")),
            vec![(key(2), 20), (key(3), 30)]
        );

        index.remove(&key(2), Some(&sid), &sub);
        index.remove(&key(3), None, &sub);
        assert!(index.by_sid("sid-hash").is_empty());
        assert!(index.by_sub("sub-hash").is_empty());
        assert!(
            index.sid.is_empty() && index.sub.is_empty(),
            "nothing left behind"
        );
    }

    #[test]
    fn removing_an_unknown_key_keeps_the_others() {
        let (sid, sub): (Arc<str>, Arc<str>) = (Arc::from("s"), Arc::from("u"));
        let mut index = Index::default();
        index.add(&key(1), Some(&sid), &sub, 1);
        index.remove(&key(9), Some(&sid), &sub);
        assert_eq!(index.by_sid("s"), vec![key(1)]);
        assert_eq!(index.by_sub("u"), vec![(key(1), 1)]);
        // Indexing the same key again updates it rather than adding one.
        index.add(&key(1), Some(&sid), &sub, 5);
        assert_eq!(index.by_sub("u"), vec![(key(1), 5)]);
    }
}
