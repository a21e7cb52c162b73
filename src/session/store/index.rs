//! The memory store's indexes: which table slots hold the sessions of each
//! `sid` hash and each `sub` hash.
//!
//! Lean on purpose, because there is an entry per session in each (a map
//! per value with the session's key cost about 450 bytes per session,
//! `bench/memory.sh`): an index is keyed by the first 8 bytes of the hash
//! and holds slot numbers, not keys. Both may be shared by another hash or
//! a later session, so the table checks the slot's full hash before it
//! trusts an answer from here.

use std::collections::HashMap;

/// A slot of the session table: its shard and its number in that shard.
pub(super) type SlotRef = u64;

/// The slots under one index value: nearly every `sid` has one session and
/// most `sub`s one or a few, so one is held inline.
enum Refs {
    One(SlotRef),
    Many(Box<[SlotRef]>),
}

/// Slots by a prefix of their index hash.
#[derive(Default)]
pub(super) struct Index {
    map: HashMap<u64, Refs>,
}

impl Index {
    /// Files slot `r` under `h`.
    pub(super) fn add(&mut self, h: u64, r: SlotRef) {
        match self.map.get_mut(&h) {
            None => {
                self.map.insert(h, Refs::One(r));
            }
            Some(Refs::One(old)) if *old == r => {}
            Some(refs @ Refs::One(_)) => {
                if let Refs::One(old) = *refs {
                    *refs = Refs::Many(Box::new([old, r]));
                }
            }
            Some(refs @ Refs::Many(_)) => {
                if let Refs::Many(v) = refs
                    && !v.contains(&r)
                {
                    let mut grown = std::mem::take(v).into_vec();
                    grown.push(r);
                    *v = grown.into_boxed_slice();
                }
            }
        }
    }

    /// Takes slot `r` from under `h`.
    pub(super) fn remove(&mut self, h: u64, r: SlotRef) {
        let empty = match self.map.get_mut(&h) {
            None => false,
            Some(Refs::One(old)) => *old == r,
            Some(refs @ Refs::Many(_)) => {
                if let Refs::Many(v) = refs {
                    let kept: Vec<SlotRef> = v.iter().copied().filter(|x| *x != r).collect();
                    *refs = match kept.as_slice() {
                        [last] => Refs::One(*last),
                        _ => Refs::Many(kept.into_boxed_slice()),
                    };
                }
                matches!(refs, Refs::Many(v) if v.is_empty())
            }
        };
        if empty {
            self.map.remove(&h);
        }
    }

    /// The slots filed under `h`.
    pub(super) fn get(&self, h: u64) -> Vec<SlotRef> {
        match self.map.get(&h) {
            None => Vec::new(),
            Some(Refs::One(r)) => vec![*r],
            Some(Refs::Many(v)) => v.to_vec(),
        }
    }

    /// How many values are filed (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<SlotRef>) -> Vec<SlotRef> {
        v.sort();
        v
    }

    #[test]
    fn one_then_many_then_none() {
        let mut index = Index::default();
        index.add(7, 1);
        assert_eq!(index.get(7), vec![1]);
        index.add(7, 2);
        index.add(7, 3);
        index.add(7, 3);
        assert_eq!(sorted(index.get(7)), vec![1, 2, 3]);
        index.remove(7, 1);
        assert_eq!(sorted(index.get(7)), vec![2, 3]);
        index.remove(7, 2);
        assert_eq!(index.get(7), vec![3]);
        index.remove(7, 3);
        assert!(index.get(7).is_empty());
        assert_eq!(index.len(), 0, "nothing left behind");
    }

    #[test]
    fn removing_an_unknown_slot_keeps_the_others() {
        let mut index = Index::default();
        index.add(1, 10);
        index.remove(1, 11);
        index.remove(2, 10);
        assert_eq!(index.get(1), vec![10]);
        index.add(1, 10);
        assert_eq!(index.get(1), vec![10]);
    }
}
