//! The backend conformance suite: the [`SessionStore`] guarantees, checked through a
//! real backend. Runs against `MemoryBackend` (this crate's tests) and `MongoBackend`
//! (session-store-mongo's tests, against a real mongod).
//!
//! Use it with `backend_conformance!`, given an async
//! function returning `Option<impl Harness>` (`None` skips, per [`crate::live`] policy).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use futures_util::StreamExt as _;
use serde_json::json;
use session_store_core::time::{Duration, OffsetDateTime};
use session_store_core::{
    backend::{DocumentBackend, DocumentUpdate, StoredDocument},
    crypto::{EncryptionKey, KeyRing},
    BoxError, Clock as _, Error, IdAtRest, LoadFailure, ManualClock, Payload, PayloadFormat,
    RequestScope, SaveOutcome, SessionData, SessionEvent, SessionSerializer, SessionStore,
    SessionStoreBuilder,
};

/// A fresh, empty backend for one test case, and its clean-up.
pub trait Harness: Send {
    /// The backend under test.
    type Backend: DocumentBackend + Clone;
    /// The backend (clones share storage).
    fn backend(&self) -> Self::Backend;
    /// Releases what the harness created (drops the test database).
    fn finish(self) -> impl Future<Output = ()> + Send;
}

/// Declares the suite's cases once, by module: re-exports each and generates
/// `backend_conformance!` with one test per case. (`$d` is a `$`, for the generated
/// macro's own variables.)
macro_rules! cases {
    ($d:tt $($module:ident { $($case:ident),* $(,)? })*) => {
        $($(pub use $module::$case;)*)*

        /// Generates one `#[tokio::test]` per conformance case. `$make` is an async
        /// function returning `Option<impl Harness>`.
        #[macro_export]
        macro_rules! backend_conformance {
            ($d make:path) => {
                $($(
                    #[$d crate::__private::tokio::test(
                        flavor = "multi_thread",
                        worker_threads = 2,
                        crate = "::session_store_testkit::__private::tokio"
                    )]
                    async fn $case() {
                        let Some(harness) = $d make().await else { return };
                        $d crate::conformance::$case(
                            $d crate::conformance::Harness::backend(&harness),
                        )
                        .await;
                        $d crate::conformance::Harness::finish(harness).await;
                    }
                )*)*
            };
        }
    };
}

mod basics;
mod binding;
mod encryption;
mod lease;
mod lifetime;
mod migration;
mod overlap;
mod owners;

cases! { $
    basics {
        create_then_load,
        create_never_overwrites_a_taken_id,
        create_gives_up_when_every_id_is_taken,
        framework_expiry_is_stored,
        expired_sessions_never_load_and_are_not_resurrected,
        changed_data_is_written,
        touch_after_skips_then_touches_expiry_only,
        without_touch_window_every_save_touches,
        touch_extends_expiry_without_rewriting_data,
        destroyed_session_is_not_resurrected_by_save,
        undecodable_document_is_no_session,
        timestamps_are_written,
        count_all_and_clear,
        document_format_round_trips,
        transform_id_sets_the_storage_key,
        save_without_prior_load_writes_in_full,
        custom_serializer_round_trips,
    }
    encryption {
        ids_are_hashed_at_rest,
        encrypted_payload_round_trips,
        undecryptable_session_is_no_session,
        key_rotation_keeps_sessions,
        rotation_completes_through_a_read_only_request,
        a_serialized_load_that_reseals_keeps_its_turn,
    }
    overlap {
        read_only_request_never_reverts,
        different_keys_are_all_kept,
        logout_between_load_and_save_is_final,
        rotation_keeps_a_live_session,
        expiry_shortened_elsewhere_is_final,
        second_load_keeps_the_first_as_base,
        serialized_requests_take_turns,
        serialized_increments_are_all_kept,
        crashed_holder_lease_runs_out,
        cancelled_request_releases_its_lease,
        random_interleavings_match_the_model,
    }
    binding {
        binding_cannot_be_forged_in_the_id,
        required_binding_refuses_unbound_requests,
    }
    lifetime {
        touch_window_never_lets_an_active_session_expire,
        max_lifetime_bounds_a_session_in_steady_use,
        max_lifetime_bounds_a_session_stored_without_creation_time,
    }
    owners {
        owner_sessions_are_listed_and_revoked,
        handles_are_not_cookies,
        rotation_keeps_the_owner,
        owner_is_unreadable_with_a_cipher,
        sessions_per_owner_are_capped,
        log_out_everywhere_reaches_every_session,
        record_seen_moves_only_a_stale_last_seen,
        a_label_goes_with_its_owner,
    }
    migration {
        raw_ids_are_adopted_on_first_load,
        logout_racing_raw_id_adoption_is_final,
        storage_keys_are_not_cookies_during_migration,
    }
    lease {
        waiting_for_a_lease_is_bounded,
        a_save_whose_lease_was_taken_does_not_write,
        serialized_store_outside_a_scope_fails_visibly,
    }
}

use encryption::ring;

type Events = Arc<Mutex<Vec<SessionEvent>>>;

struct Fixture<B> {
    store: SessionStore,
    backend: B,
    clock: ManualClock,
    events: Events,
}

impl<B> Fixture<B> {
    fn events(&self) -> Vec<SessionEvent> {
        self.events.lock().unwrap().clone()
    }
}

fn start_clock() -> ManualClock {
    // Real time, so a server-side TTL monitor never deletes what a test writes.
    ManualClock::new(OffsetDateTime::now_utc())
}

async fn fixture<B: DocumentBackend + Clone>(
    backend: B,
    configure: impl FnOnce(SessionStoreBuilder) -> SessionStoreBuilder,
) -> Fixture<B> {
    let clock = start_clock();
    let events: Events = Arc::default();
    let sink = Arc::clone(&events);
    let builder = SessionStore::builder(backend.clone())
        .ttl(StdDuration::from_secs(3600))
        .clock(clock.clone())
        .on_event(move |e: &SessionEvent| sink.lock().unwrap().push(e.clone()));
    let store = configure(builder).build().await.expect("store builds");
    Fixture {
        store,
        backend,
        clock,
        events,
    }
}

fn data(value: serde_json::Value) -> SessionData {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("test data must be an object, got {other}"),
    }
}

fn millis(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() - t.nanosecond() % 1_000_000)
        .unwrap()
}

/// The stored document of session `id`, read from the backend directly.
async fn raw<B: DocumentBackend>(f: &Fixture<B>, id: &str) -> StoredDocument {
    raw_at(&f.backend, &f.store.storage_key(id)).await
}

/// The stored document under storage key `key`.
async fn raw_at<B: DocumentBackend>(backend: &B, key: &str) -> StoredDocument {
    // Far in the past: sees the document whatever its expiry.
    backend
        .find(key, OffsetDateTime::UNIX_EPOCH)
        .await
        .expect("backend find")
        .unwrap_or_else(|| panic!("no document stored under the key"))
}
