//! Ending sessions by IdP `sid` and by `sub`: the indexes, `delete_by_sub`, `revoke_once`.

use portcullis::session::Revoke;

use super::*;

pub(super) async fn indexes_follow_sessions(s: Sessions) {
    let (a1, _) = s.create(login("erin", Some("idp-sid-1"))).await.unwrap();
    let (a2, _) = s.create(login("erin", Some("idp-sid-2"))).await.unwrap();
    let (other, _) = s.create(login("frank", Some("idp-sid-3"))).await.unwrap();
    let listed = s.list_by_sub(ISS, "erin").await.unwrap();
    assert_eq!(listed.len(), 2);
    // Index keys are keyed hashes: a sub in another issuer is another user.
    assert!(
        s.list_by_sub("https://other.idp", "erin")
            .await
            .unwrap()
            .is_empty()
    );

    // Deleting one session removes it from both indexes.
    let s1 = s.load(&a1.to_cookie_value()).await.unwrap().unwrap();
    assert!(s.delete(&s1).await.unwrap());
    let listed = s.list_by_sub(ISS, "erin").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(s.delete_by_sid(ISS, "idp-sid-1").await.unwrap(), 0);

    // Back-channel by sid ends exactly that IdP session.
    assert_eq!(s.delete_by_sid(ISS, "idp-sid-2").await.unwrap(), 1);
    assert!(s.load(&a2.to_cookie_value()).await.unwrap().is_none());
    assert!(s.list_by_sub(ISS, "erin").await.unwrap().is_empty());
    assert_eq!(s.delete_by_sid(ISS, "idp-sid-2").await.unwrap(), 0);
    assert!(s.load(&other.to_cookie_value()).await.unwrap().is_some());
    assert_eq!(
        s.delete_by_sid("https://other.idp", "idp-sid-3")
            .await
            .unwrap(),
        0
    );
    assert!(s.load(&other.to_cookie_value()).await.unwrap().is_some());
}
both_stores!(
    memory_indexes_follow_sessions,
    redis_indexes_follow_sessions,
    indexes_follow_sessions,
    LONG,
    LONG
);

async fn delete_by_sub_created_before(s: Sessions) {
    let (old, _) = s.create(login("gina", None)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let iat = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (new, _) = s.create(login("gina", None)).await.unwrap();
    let (bystander, _) = s.create(login("hank", None)).await.unwrap();

    assert_eq!(s.delete_by_sub(ISS, "gina", Some(iat)).await.unwrap(), 1);
    assert!(s.load(&old.to_cookie_value()).await.unwrap().is_none());
    assert!(s.load(&new.to_cookie_value()).await.unwrap().is_some());
    assert_eq!(s.delete_by_sub(ISS, "gina", None).await.unwrap(), 1);
    assert!(s.load(&new.to_cookie_value()).await.unwrap().is_none());
    assert!(
        s.load(&bystander.to_cookie_value())
            .await
            .unwrap()
            .is_some()
    );
}
both_stores!(
    memory_delete_by_sub_created_before,
    redis_delete_by_sub_created_before,
    delete_by_sub_created_before,
    LONG,
    LONG
);

/// The back-channel step: a claim and a deletion together, once.
pub(super) async fn revoke_once_claims_and_deletes_together(s: Sessions) {
    let ttl = Duration::from_secs(60);
    let (a1, _) = s.create(login("ida", Some("idp-1"))).await.unwrap();
    let (a2, _) = s.create(login("ida", Some("idp-1"))).await.unwrap();
    let (bob, _) = s.create(login("bob", Some("idp-2"))).await.unwrap();
    let alive = |id: &portcullis::session::SessionId| {
        let (s, c) = (s.clone(), id.to_cookie_value());
        async move { s.load(&c).await.unwrap().is_some() }
    };

    let sid = Revoke::Sid("idp-1");
    assert_eq!(
        s.revoke_once("jti-a", ttl, ISS, sid).await.unwrap(),
        Some(2)
    );
    assert!(!alive(&a1).await && !alive(&a2).await);
    assert!(alive(&bob).await, "another IdP session survives");
    // A replay ends nothing, not even a session made since under that sid.
    let (a3, _) = s.create(login("ida", Some("idp-1"))).await.unwrap();
    assert_eq!(s.revoke_once("jti-a", ttl, ISS, sid).await.unwrap(), None);
    assert!(alive(&a3).await, "a replay deleted a session");
    assert!(
        !s.claim_once("jti-a", ttl).await.unwrap(),
        "the same claim as claim_once"
    );
    // No session matched: still claimed.
    let nobody = Revoke::Sid("nobody");
    assert_eq!(
        s.revoke_once("jti-b", ttl, ISS, nobody).await.unwrap(),
        Some(0)
    );
    assert_eq!(
        s.revoke_once("jti-b", ttl, ISS, nobody).await.unwrap(),
        None
    );

    // By sub: only sessions created before the cut-off.
    let (old, _) = s.create(login("gus", None)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let iat = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (new, _) = s.create(login("gus", None)).await.unwrap();
    let sub = Revoke::Sub("gus", Some(iat));
    assert_eq!(
        s.revoke_once("jti-c", ttl, ISS, sub).await.unwrap(),
        Some(1)
    );
    assert!(!alive(&old).await && alive(&new).await);
    assert_eq!(s.revoke_once("jti-c", ttl, ISS, sub).await.unwrap(), None);

    // After a secret rotation, sessions indexed under the old secret are
    // found too (every hash in the same step). `reconfigure` keeps the
    // store, so only the secrets of this config matter.
    let mut rotated = config(StoreConfig::Memory, LONG, LONG);
    rotated.secrets = vec![Secret::new(SECRET_B), Secret::new(SECRET_A)];
    let r = s.reconfigure(&rotated).unwrap();
    let all = Revoke::Sub("ida", None);
    assert_eq!(
        r.revoke_once("jti-d", ttl, ISS, all).await.unwrap(),
        Some(1)
    );
    assert!(!alive(&a3).await);
    assert!(alive(&bob).await);
}
both_stores!(
    memory_revoke_once_claims_and_deletes_together,
    redis_revoke_once_claims_and_deletes_together,
    revoke_once_claims_and_deletes_together,
    LONG,
    LONG
);

on_cluster!(
    cluster_indexes_follow_sessions,
    indexes_follow_sessions,
    LONG,
    LONG
);
on_cluster!(
    cluster_delete_by_sub_created_before,
    delete_by_sub_created_before,
    LONG,
    LONG
);
on_cluster!(
    cluster_revoke_once_claims_and_deletes_together,
    revoke_once_claims_and_deletes_together,
    LONG,
    LONG
);
