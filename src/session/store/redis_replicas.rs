//! Which replicas must confirm a deletion before it is acknowledged, and
//! the `WAIT` that asks them.
//!
//! A deletion acknowledged on the strength of its master alone could be
//! undone by a failover that promotes a replica it never reached. So when
//! the master that took the write has a replica, the store waits until one
//! has it (`WAIT 1`). On a cluster this is decided per shard: each master
//! that owns a slot the operation wrote waits when it has a replica. A
//! master without one (just promoted, or added empty while scaling) has
//! nothing a failover could promote, and must not switch the wait off for
//! the other shards, as taking the fewest replicas of any master did.

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::join_all;

use super::StoreError;
use super::redis::{redis_failure, unavailable};
use super::redis_conn::Backend;

/// How long a deletion waits for a replica to confirm it (`WAIT`).
const REPLICA_WAIT: Duration = Duration::from_secs(1);

/// Hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// The replicas the store last learned of, refreshed every few seconds by
/// the revocation subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Replicas {
    /// Not learned yet, or Redis refuses to tell (a user whose ACL lacks
    /// `ROLE` or `CLUSTER`): every master written to is waited on, as if it
    /// had a replica. Assuming none would switch the wait off unnoticed.
    Unknown,
    /// One master (a server, or a Sentinel set's): how many replicas it has
    /// (`ROLE`).
    Master(usize),
    /// A cluster's masters (`CLUSTER NODES`).
    Cluster(Vec<Shard>),
}

impl Default for Replicas {
    /// Nothing learned yet.
    fn default() -> Self {
        Replicas::Unknown
    }
}

/// One master of a cluster: the slots it owns and how many live replicas
/// it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shard {
    slots: Vec<RangeInclusive<u16>>,
    replicas: usize,
}

impl Replicas {
    /// The masters of a `CLUSTER NODES` listing, with their slots and
    /// replicas. A node flagged `fail` (the cluster agrees it is down; not
    /// `fail?`, one node's suspicion) is left out: a failed replica
    /// confirms nothing, and a failed master's slots are served by nobody.
    pub(crate) fn from_cluster_nodes(listing: &str) -> Replicas {
        let mut shards: Vec<Shard> = Vec::new();
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        let mut replica_of = Vec::new();
        for line in listing.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(id), Some(flags), Some(master)) = (f.first(), f.get(2), f.get(3)) else {
                continue;
            };
            let flags: Vec<&str> = flags.split(',').collect();
            if flags.contains(&"fail") {
                continue;
            }
            if flags.contains(&"master") {
                by_id.insert(id, shards.len());
                shards.push(Shard {
                    slots: f.iter().skip(8).filter_map(|s| slot_range(s)).collect(),
                    replicas: 0,
                });
            } else if flags.contains(&"slave") {
                replica_of.push(*master);
            }
        }
        for m in replica_of {
            if let Some(shard) = by_id.get(m).and_then(|&i| shards.get_mut(i)) {
                shard.replicas += 1;
            }
        }
        Replicas::Cluster(shards)
    }

    /// Which masters to ask with `WAIT` after writing the keys `written`:
    /// `None` for the one master, else one written key per cluster master
    /// that has a replica (the `WAIT` is routed by it). Empty: no wait.
    /// Unknown replicas on a `cluster`: one key per slot written, since
    /// which master owns which slot is unknown too.
    fn waits<'a>(&self, written: &'a [String], cluster: bool) -> Vec<Option<&'a str>> {
        match self {
            Replicas::Unknown if cluster => {
                let mut seen = HashSet::new();
                written
                    .iter()
                    .filter(|k| seen.insert(key_slot(k.as_bytes())))
                    .map(|k| Some(k.as_str()))
                    .collect()
            }
            Replicas::Unknown => vec![None],
            Replicas::Master(0) => Vec::new(),
            // As always on one master: whatever was written.
            Replicas::Master(_) => vec![None],
            Replicas::Cluster(shards) => {
                let mut seen = HashSet::new();
                written
                    .iter()
                    .filter(|k| {
                        shard_of(shards, key_slot(k.as_bytes()))
                            .is_some_and(|(i, s)| s.replicas > 0 && seen.insert(i))
                    })
                    .map(|k| Some(k.as_str()))
                    .collect()
            }
        }
    }

    /// Whether the master a `WAIT` was routed to (see [`Replicas::waits`])
    /// still has a replica that could be promoted.
    fn has_replica(&self, route: Option<&str>) -> bool {
        match (self, route) {
            (Replicas::Unknown, _) => true,
            (Replicas::Master(n), _) => *n > 0,
            (Replicas::Cluster(shards), Some(k)) => {
                shard_of(shards, key_slot(k.as_bytes())).is_some_and(|(_, s)| s.replicas > 0)
            }
            (Replicas::Cluster(shards), None) => shards.iter().any(|s| s.replicas > 0),
        }
    }
}

/// The master that owns `slot`, and its index; `None` when none does (not
/// learned yet, unassigned, or its master failed): nothing to wait for.
fn shard_of(shards: &[Shard], slot: u16) -> Option<(usize, &Shard)> {
    shards
        .iter()
        .enumerate()
        .find(|(_, s)| s.slots.iter().any(|r| r.contains(&slot)))
}

/// A slot field of `CLUSTER NODES`: `5461`, `0-5460`; `None` for the
/// `[slot->-id]` / `[slot-<-id]` of a migration in progress (the slot is
/// also listed, plainly, under the master that owns it now).
fn slot_range(field: &str) -> Option<RangeInclusive<u16>> {
    if field.starts_with('[') {
        return None;
    }
    let (first, last) = field.split_once('-').unwrap_or((field, field));
    Some(first.parse().ok()?..=last.parse().ok()?)
}

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag (the part
/// between the first `{` and the next `}`, when not empty) or of the whole
/// key, modulo 16384.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = key.get(open + 1..)?;
        let close = rest.iter().position(|&b| b == b'}')?;
        rest.get(..close).filter(|tag| !tag.is_empty())
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % SLOTS
}

/// Makes an acknowledged deletion or claim survive a failover: each master
/// that took one of the keys `written` and has a replica waits until one
/// has it (`WAIT 1`, concurrently across masters); a promoted replica then
/// has it too. Without a replica confirming in time the operation fails
/// (`Unavailable`), so the user is never told "logged out" on the strength
/// of a write a failover could lose.
pub(super) async fn confirm(
    backend: &Backend,
    replicas: &ArcSwap<Replicas>,
    written: &[String],
) -> Result<(), StoreError> {
    let known = replicas.load_full();
    let waits = known.waits(written, backend.is_cluster());
    if waits.is_empty() {
        return Ok(());
    }
    let acks = join_all(
        waits
            .iter()
            .map(|route| backend.wait_for_replica(*route, REPLICA_WAIT)),
    )
    .await;
    let mut unconfirmed = Vec::new();
    for (route, acked) in waits.iter().zip(acks) {
        if acked.map_err(unavailable)? < 1 {
            unconfirmed.push(*route);
        }
    }
    if unconfirmed.is_empty() {
        return Ok(());
    }
    // The replica may have gone since the topology was read (or a failover
    // moved the slot to a master without one): with none left there is
    // nothing a failover could promote.
    let now = match backend.replicas().await {
        Ok(now) => Arc::new(now),
        Err(e) => {
            return Err(StoreError::Unavailable(format!(
                "no replica confirmed the write, and the replicas cannot be learned ({})",
                redis_failure(&e)
            )));
        }
    };
    replicas.store(now.clone());
    if unconfirmed.iter().any(|route| now.has_replica(*route)) {
        Err(StoreError::Unavailable(
            "no replica confirmed the write".into(),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three masters (one, `e`, added empty while scaling), replicas of `a`
    /// (one failed, one only suspected) and of `b`.
    const NODES: &str = "\
a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10921 10922 [10923->-c]
c 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383
e 127.0.0.1:7006@17006 master - 0 0 7 connected
d 127.0.0.1:7003@17003 slave b 0 0 2 connected
f 127.0.0.1:7004@17004 slave,fail a 0 0 1 disconnected
g 127.0.0.1:7005@17005 slave,fail? a 0 0 1 connected
";

    fn shard(slots: &[RangeInclusive<u16>], replicas: usize) -> Shard {
        Shard {
            slots: slots.to_vec(),
            replicas,
        }
    }

    #[test]
    fn masters_are_parsed_with_their_slots_and_live_replicas() {
        assert_eq!(
            Replicas::from_cluster_nodes(NODES),
            Replicas::Cluster(vec![
                shard(&[0..=5460], 1),
                shard(&[5461..=10921, 10922..=10922], 1),
                shard(&[10923..=16383], 0),
                shard(&[], 0),
            ])
        );
        assert_eq!(Replicas::from_cluster_nodes(""), Replicas::Cluster(vec![]));
        // A failed master (its replica not promoted yet) serves nothing.
        let failed = NODES.replace("myself,master", "master,fail");
        let Replicas::Cluster(shards) = Replicas::from_cluster_nodes(&failed) else {
            panic!("not a cluster");
        };
        assert!(shard_of(&shards, 0).is_none());
    }

    #[test]
    fn slots_are_those_of_redis() {
        // `CLUSTER KEYSLOT` of Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag: the whole key.
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    }

    #[test]
    fn each_shard_with_a_replica_is_waited_on_once() {
        let r = Replicas::from_cluster_nodes(NODES);
        let Replicas::Cluster(shards) = &r else {
            panic!("not a cluster");
        };
        let master = |k: &str| shard_of(shards, key_slot(k.as_bytes())).map(|(i, _)| i);
        let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        let mut waited: Vec<_> = r
            .waits(&keys, true)
            .into_iter()
            .map(|w| master(w.unwrap()))
            .collect();
        waited.sort();
        assert_eq!(
            waited,
            [Some(0), Some(1)],
            "one WAIT per master with a replica"
        );
        // "foo" (slot 12182) is c's, which has no replica.
        assert!(r.waits(&["foo".to_owned()], true).is_empty());
        assert!(r.waits(&[], true).is_empty());
        assert!(!r.has_replica(Some("foo")));
        let on_b = keys.iter().find(|k| master(k) == Some(1)).unwrap();
        assert!(r.has_replica(Some(on_b)));
    }

    #[test]
    fn one_master_waits_whenever_it_has_a_replica() {
        assert!(
            Replicas::Master(0)
                .waits(&["k".to_owned()], false)
                .is_empty()
        );
        assert_eq!(Replicas::Master(2).waits(&[], false), vec![None]);
        assert!(Replicas::Master(1).has_replica(None));
        assert!(!Replicas::Master(0).has_replica(None));
    }

    /// Not learned (or refused): waited on as if a replica existed, once
    /// per master, or once per slot on a cluster, whose slot owners are
    /// unknown too.
    #[test]
    fn unknown_replicas_are_waited_on() {
        let unknown = Replicas::default();
        assert_eq!(unknown, Replicas::Unknown);
        assert!(unknown.has_replica(None));
        assert_eq!(
            unknown.waits(&["a".to_owned(), "b".to_owned()], false),
            vec![None]
        );
        let keys = ["{x}1".to_owned(), "{x}2".to_owned(), "foo".to_owned()];
        assert_eq!(
            unknown.waits(&keys, true),
            vec![Some("{x}1"), Some("foo")],
            "one WAIT per slot"
        );
    }
}
