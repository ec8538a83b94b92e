//! Sessions bound to a client identity (`RequestScope::bound`): a bound session loads
//! only for its binding, the binding cannot be forged through the id, and with
//! `require_binding` an unbound request reaches nothing.

use super::*;

/// A fingerprint-like binding; not a secret (a client certificate's fingerprint is public).
const BINDING: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// A bound session loads for its own binding only: not for another binding, not unbound,
/// and an unbound request cannot name it by putting the binding into the id (`{id}#{binding}`
/// was once the bound key's input).
pub async fn binding_cannot_be_forged_in_the_id<B: DocumentBackend + Clone>(backend: B) {
    for id_at_rest in [IdAtRest::Sha256, IdAtRest::Raw] {
        let f = fixture(backend.clone(), |b| b.id_at_rest(id_at_rest)).await;
        let mine = RequestScope::bound(Some(BINDING.into()));
        let id = f
            .store
            .in_scope(&mine)
            .create(&data(json!({"user": "ann"})), None)
            .await
            .unwrap();
        let key = f.store.in_scope(&mine).storage_key(id.as_str());
        assert!(
            f.store
                .in_scope(&mine)
                .load(id.as_str())
                .await
                .unwrap()
                .is_some(),
            "{id_at_rest:?}: the bound session must load for its binding"
        );
        let other = RequestScope::bound(Some(format!("{BINDING}0")));
        assert!(
            f.store
                .in_scope(&other)
                .load(id.as_str())
                .await
                .unwrap()
                .is_none(),
            "{id_at_rest:?}: another binding loaded the session"
        );
        for forged in [
            id.as_str().to_owned(),
            format!("{}#{BINDING}", id.as_str()),
            key.clone(),
        ] {
            let unbound = RequestScope::new();
            assert!(
                f.store
                    .in_scope(&unbound)
                    .load(&forged)
                    .await
                    .unwrap()
                    .is_none(),
                "{id_at_rest:?}: an unbound request with the id {forged:?} reached the bound \
                 session"
            );
        }
        // Moving characters between id and binding names another document.
        let shifted = RequestScope::bound(Some(BINDING[1..].into()));
        let shifted_id = format!("{}{}", id.as_str(), &BINDING[..1]);
        assert_ne!(
            f.store.in_scope(&shifted).storage_key(&shifted_id),
            key,
            "{id_at_rest:?}: (id + c, binding - c) has the same key"
        );
        // Nothing above wrote anything.
        assert_eq!(f.store.count().await.unwrap(), 1);
        f.store.clear().await.unwrap();
    }
}

/// With `require_binding`, an unbound request (a scope without binding, or no scope)
/// loads no session and stores, saves or deletes nothing, even with the id of a bound
/// session (without any scope its loads, saves and creates fail as a set-up error);
/// bound requests work as usual.
pub async fn required_binding_refuses_unbound_requests<B: DocumentBackend + Clone>(backend: B) {
    for id_at_rest in [IdAtRest::Sha256, IdAtRest::Raw] {
        let f = fixture(backend.clone(), |b| {
            b.id_at_rest(id_at_rest).require_binding(true)
        })
        .await;
        let mine = RequestScope::bound(Some(BINDING.into()));
        let id = f
            .store
            .in_scope(&mine)
            .create(&data(json!({"user": "ann"})), None)
            .await
            .unwrap();
        let key = f.store.in_scope(&mine).storage_key(id.as_str());
        for (scope, what) in [
            (Some(RequestScope::new()), "an unbound scope"),
            (None, "no scope"),
        ] {
            let scope = scope.as_ref();
            // Without any scope the store cannot tell whether a request is bound: every
            // load, save and create fails visibly (a set-up error) instead.
            let refused = |e: &Error| {
                scope.is_none()
                    && matches!(
                        e,
                        Error::NoRequestScope {
                            option: "require_binding"
                        }
                    )
            };
            // The store as this request (or no request) uses it.
            let store = match scope {
                Some(scope) => f.store.in_scope(scope),
                None => f.store.clone(),
            };
            for forged in [id.as_str().to_owned(), key.clone()] {
                match store.load(&forged).await {
                    Ok(None) if scope.is_some() => {}
                    Err(e) if refused(&e) => {}
                    other => {
                        panic!("{id_at_rest:?}, {what}: loading with {forged:?} gave {other:?}")
                    }
                }
                match store
                    .save(&forged, &data(json!({"user": "mallory"})), None)
                    .await
                {
                    Ok(SaveOutcome::NotFound) if scope.is_some() => {}
                    Err(e) if refused(&e) => {}
                    other => panic!("{id_at_rest:?}, {what}: save gave {other:?}"),
                }
                store.destroy(&forged).await.unwrap();
            }
            match store.create(&data(json!({"user": "eve"})), None).await {
                Ok(_) => assert!(
                    scope.is_some(),
                    "{what}: a create outside a scope succeeded"
                ),
                Err(e) if refused(&e) => {}
                Err(e) => panic!("{id_at_rest:?}, {what}: create failed: {e}"),
            }
        }
        assert_eq!(
            f.store.count().await.unwrap(),
            1,
            "{id_at_rest:?}: an unbound request created or deleted a session"
        );
        let loaded = f.store.in_scope(&mine).load(id.as_str()).await.unwrap();
        assert_eq!(
            loaded.map(|s| s.data),
            Some(data(json!({"user": "ann"}))),
            "{id_at_rest:?}: the bound session must be unchanged and still load"
        );
        f.store.clear().await.unwrap();
    }
}
