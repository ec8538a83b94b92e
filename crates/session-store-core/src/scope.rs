//! The request scope: what one request knows about the sessions it uses.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use time::OffsetDateTime;

use crate::backend::StoredDocument;
use crate::codec::SessionData;
use crate::failure::StoreFailure;

thread_local! {
    static CURRENT: RefCell<Option<RequestScope>> = const { RefCell::new(None) };
}

/// A client identity a request's sessions are bound to (e.g. the SHA-256 fingerprint of
/// its TLS client certificate), for [`RequestScope::bound`]. The adapters read it from the
/// request (Axum and Actix: a request extension; Rocket: the request-local cache), put
/// there before the request's scope opens. Default: unbound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionBinding(pub Option<String>);

/// One request's view of its sessions. Cheap to clone (clones share the state).
///
/// Browsers send requests on one session in parallel, and several instances share one
/// collection, so a request must be judged against what **it** loaded, not against the
/// latest copy some other request left in the process. Every operation of the store
/// handle [`SessionStore::in_scope`](crate::SessionStore::in_scope)`(&scope)`:
///
/// - remembers what [`SessionStore::load`](crate::SessionStore::load) returned (data,
///   version, last write), so a later save compares with that: a request that changed
///   nothing writes no data, and one that changed some keys re-applies only those keys
///   if another request wrote the session meanwhile;
/// - learns when its session was ended by someone else (logout, revocation, expiry): a
///   save then writes nothing and a new session created in the same request
///   (tower-sessions' `cycle_id`, actix-session's `renew`) is not stored, so nothing of
///   the ended session comes back;
/// - holds the session's lease when the store serializes requests
///   ([`SessionStoreBuilder::serialize_requests`](crate::SessionStoreBuilder::serialize_requests)),
///   until the save releases it or [`finish`](RequestScope::finish) does;
/// - uses the scope's **binding**, if any, in every storage key: a session bound to a
///   client identity (e.g. a TLS client certificate's fingerprint) only loads for that
///   identity; a cookie replayed with another binding names a document that does not
///   exist, and the session it was stolen from is neither read nor changed.
///
/// The adapters make a scope per request and pass it to the store: Rocket's fairing
/// keeps it in the request; tower-sessions-mongo's `SessionLayer` and
/// actix-session-mongo's `ScopedSessionMiddleware` [run](RequestScope::run) the request's
/// future in it, since the framework calls their store from that future, and their store
/// reads it ([`RequestScope::current`]) once per call, at its boundary. The scope does
/// not follow work spawned onto other tasks. A store used without a scope knows nothing
/// about the request: every save writes the data it is given and a touch window cannot
/// skip writes; options that need a scope (`serialize_requests`, `require_binding`)
/// refuse to work ([`Error::NoRequestScope`](crate::Error::NoRequestScope)).
///
/// ```
/// use session_store_core::{MemoryBackend, RequestScope, SaveOutcome, SessionData, SessionStore};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = SessionStore::builder(MemoryBackend::new())
///     .touch_after(Duration::from_secs(60))
///     .build()
///     .await?;
/// let mut data = SessionData::new();
/// data.insert("count".into(), 1.into());
/// let id = store.create(&data, None).await?;
///
/// // Two requests load the same session; one changes it, the other only reads.
/// let (a, b) = (RequestScope::new(), RequestScope::new());
/// let loaded_a = store.in_scope(&a).load(id.as_str()).await?.expect("live");
/// let loaded_b = store.in_scope(&b).load(id.as_str()).await?.expect("live");
/// let mut changed = loaded_a.data.clone();
/// changed.insert("count".into(), 2.into());
/// assert_eq!(store.in_scope(&a).save(id.as_str(), &changed, None).await?, SaveOutcome::Written);
/// // The reader's stale copy is not written back.
/// assert_eq!(store.in_scope(&b).save(id.as_str(), &loaded_b.data, None).await?, SaveOutcome::Skipped);
/// assert_eq!(store.load(id.as_str()).await?.expect("live").data["count"], 2);
///
/// // Bound scopes: a session created for one identity does not load for another.
/// let cert_a = RequestScope::bound(Some("cert-a".into()));
/// let id = store.in_scope(&cert_a).create(&data, None).await?;
/// assert!(store.in_scope(&cert_a).load(id.as_str()).await?.is_some());
/// let cert_b = RequestScope::bound(Some("cert-b".into()));
/// assert!(store.in_scope(&cert_b).load(id.as_str()).await?.is_none());
/// assert!(store.load(id.as_str()).await?.is_none()); // unbound
/// # Ok::<(), session_store_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct RequestScope {
    inner: Arc<ScopeInner>,
}

/// The longest label kept, in characters ([`RequestScope::set_label`] cuts a longer one):
/// room for a browser's whole `User-Agent`.
pub const MAX_LABEL_CHARS: usize = 256;

#[derive(Default)]
struct ScopeInner {
    binding: Option<Arc<str>>,
    state: Mutex<ScopeState>,
}

#[derive(Default)]
struct ScopeState {
    /// What this request loaded or last wrote, by storage key.
    bases: HashMap<String, Base>,
    /// The earliest creation time of sessions this request loaded and then ended (an id
    /// rotation deletes the old session before creating the new one).
    ended_created: Option<OffsetDateTime>,
    /// The stored owner of a session this request loaded and then ended (inherited by the
    /// session an id rotation creates).
    ended_owner: Option<String>,
    /// The owner a handler set for this request's session.
    owner: Option<String>,
    /// The label of a session this request loaded and then ended (inherited like
    /// `ended_owner`).
    ended_label: Option<String>,
    /// The label a handler set for this request's session.
    label: Option<String>,
    /// Leases this request holds and has not released, by storage key.
    leases: HashMap<String, Held>,
    /// Sessions with an owner this request loaded and has not written, by storage key,
    /// with their stored "last seen" and the store that loaded them:
    /// [`RequestScope::finish`] records the visit.
    visits: HashMap<String, Visit>,
    /// A session this request loaded was ended by someone else during the request.
    ended: bool,
    /// The first store operation of this request that failed.
    failure: Option<StoreFailure>,
}

/// The stored times, owner and label a load hands to the request's scope.
#[derive(Debug, Clone)]
pub(crate) struct Stamps {
    pub(crate) last_modified: Option<OffsetDateTime>,
    pub(crate) created_at: Option<OffsetDateTime>,
    pub(crate) owner: Option<String>,
    /// The stored label, opened.
    pub(crate) label: Option<String>,
    /// The stored `updatedAt`: when it was last written or seen.
    pub(crate) updated_at: Option<OffsetDateTime>,
}

/// What a request knows of one session: the state its changes are measured against.
/// Cheap to clone: the data is shared.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    /// The stored version it loaded or wrote (0 for documents without one).
    pub(crate) version: i64,
    /// The data stored at that version.
    pub(crate) data: Arc<SessionData>,
    /// The data as the request's framework last had it, when it differs from `data`
    /// (after a save merged other requests' changes in). `None`: the same as `data`.
    pub(crate) view: Option<Arc<SessionData>>,
    pub(crate) last_modified: Option<OffsetDateTime>,
    /// The stored expiry as of that version.
    pub(crate) expires: Option<OffsetDateTime>,
    /// When the session was created, if stored.
    pub(crate) created_at: Option<OffsetDateTime>,
    /// The stored `owner`, if any.
    pub(crate) owner: Option<String>,
    /// The stored `label`, opened, if any.
    pub(crate) label: Option<String>,
}

impl Base {
    /// What a load found: `data` at `version`, with its stored times.
    pub(crate) fn loaded(
        version: i64,
        data: SessionData,
        stamps: Stamps,
        expires: OffsetDateTime,
    ) -> Self {
        Self {
            version,
            data: Arc::new(data),
            view: None,
            last_modified: stamps.last_modified,
            expires: Some(expires),
            created_at: stamps.created_at,
            owner: stamps.owner,
            label: stamps.label,
        }
    }

    /// What a create inserted: `doc`, holding `data`, labelled `label`.
    pub(crate) fn created(doc: &StoredDocument, data: SessionData, label: Option<String>) -> Self {
        Self {
            version: 0,
            data: Arc::new(data),
            view: None,
            last_modified: doc.last_modified,
            expires: doc.expires,
            created_at: doc.created_at,
            owner: doc.owner.clone(),
            label,
        }
    }

    /// What the request's framework last had.
    pub(crate) fn view(&self) -> &SessionData {
        self.view.as_deref().unwrap_or(&self.data)
    }
}

/// What the store a request used does when the request finishes: release the leases it
/// holds, record its visits to sessions it did not write.
pub(crate) trait Finisher: Send + Sync {
    /// Releases the lease `token` holds on `key`; run by [`RequestScope::finish`] when no
    /// save did. Failures are logged: an unreleased lease runs out on its own.
    fn release(&self, key: String, token: String) -> BoxFuture<'static, ()>;

    /// Starts releasing without waiting (in the background); run when a scope
    /// that still holds a lease is dropped: a request cancelled mid-way (the client went
    /// away) does not block its session until the lease runs out.
    fn detach(&self, key: String, token: String);

    /// Records that the request used the session under `key` without writing it, last
    /// seen at `last_seen` as it loaded it; run by [`RequestScope::finish`]. Failures are
    /// logged: "last seen" then stays at the session's previous visit.
    fn record_seen(&self, key: String, last_seen: Option<OffsetDateTime>)
        -> BoxFuture<'static, ()>;
}

/// A session with an owner the request loaded and has not written: its stored
/// `updatedAt` ("last seen") and the store that records the visit.
pub(crate) struct Visit {
    pub(crate) last_seen: Option<OffsetDateTime>,
    pub(crate) store: Arc<dyn Finisher>,
}

/// A lease the request holds: its token (the only copy the request keeps) and who
/// releases it.
pub(crate) struct Held {
    pub(crate) token: String,
    pub(crate) releaser: Arc<dyn Finisher>,
}

impl Drop for ScopeInner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for (key, held) in state.leases.drain() {
            held.releaser.detach(key, held.token);
        }
    }
}

impl fmt::Debug for RequestScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("RequestScope")
            .field("bound", &self.inner.binding.is_some())
            .field("sessions", &state.bases.len())
            .field("leases", &state.leases.len())
            .field("ended", &state.ended)
            .finish()
    }
}

impl RequestScope {
    /// A new, unbound scope for one request.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A new scope whose storage keys are bound to `binding` (`None`: unbound), e.g. the
    /// SHA-256 fingerprint of the request's TLS client certificate.
    #[must_use]
    pub fn bound(binding: Option<String>) -> Self {
        Self {
            inner: Arc::new(ScopeInner {
                binding: binding.map(Arc::from),
                state: Mutex::default(),
            }),
        }
    }

    /// Runs `fut` with this scope as the [current](RequestScope::current) one, for an
    /// adapter whose store the framework calls from inside the request's future. Nested
    /// scopes: the innermost applies. The store itself never reads it: pass the scope
    /// with [`SessionStore::in_scope`](crate::SessionStore::in_scope).
    pub fn run<F: Future>(&self, fut: F) -> Scoped<F> {
        Scoped {
            scope: self.clone(),
            inner: Box::pin(fut),
        }
    }

    /// Whether a session this request loaded was ended by someone else while the request
    /// ran (a save or touch found it gone, or a delete found nothing to delete).
    #[must_use]
    pub fn session_ended(&self) -> bool {
        self.lock().ended
    }

    /// The first store operation of this request that failed, if any (the store logged
    /// it): adapters answer a `5xx` response of such a request with
    /// [`StoreFailure`]'s status, `Retry-After` and body.
    #[must_use]
    pub fn failure(&self) -> Option<StoreFailure> {
        self.lock().failure
    }

    /// Notes that a store operation of this request failed (the first one is kept).
    pub(crate) fn failed(&self, failure: StoreFailure) {
        self.lock().failure.get_or_insert(failure);
    }

    /// Releases every lease the request still holds (a save releases its own; this
    /// covers requests that did not save: an error response, a handler that failed), then
    /// records the visit to each session with an owner that the request loaded and did
    /// not write (its [`last_seen`](crate::SessionInfo::last_seen): one small write, at
    /// most once a minute per session, which the response waits for). Adapters call it
    /// when the response is ready. Failures are logged, not returned: an unreleased lease
    /// expires on its own, an unrecorded visit leaves "last seen" at the one before. A
    /// scope dropped with leases still held (a request cancelled mid-way) starts
    /// releasing them in the background; its visits are not recorded.
    pub async fn finish(&self) {
        let pending: Vec<(String, Held)> = self.lock().leases.drain().collect();
        for (key, held) in pending {
            held.releaser.release(key, held.token).await;
        }
        let visits: Vec<(String, Visit)> = self.lock().visits.drain().collect();
        for (key, visit) in visits {
            visit.store.record_seen(key, visit.last_seen).await;
        }
    }

    /// Sets whose session this request's session is (e.g. at login, the user's id): the
    /// session the request creates or saves is stored with this owner, and
    /// [`SessionStore::sessions_of`](crate::SessionStore::sessions_of) lists it. A session
    /// created by an id rotation keeps its predecessor's owner without this. From a
    /// handler, use the adapter's way (`SessionOwnerExt::set_owner` on the session in Axum
    /// and Actix Web, `Session::set_owner` in Rocket): it fails visibly without a scope.
    ///
    /// ```
    /// use session_store_core::{MemoryBackend, RequestScope, SessionData, SessionStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = SessionStore::builder(MemoryBackend::new()).build().await?;
    /// let login = RequestScope::new();
    /// login.set_owner("user-42");
    /// store.in_scope(&login).create(&SessionData::new(), None).await?;
    /// assert_eq!(store.sessions_of("user-42").await?.len(), 1);
    /// # Ok::<(), session_store_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn set_owner(&self, owner: impl Into<String>) {
        self.lock().owner = Some(owner.into());
    }

    /// Names this request's session for its owner's device list (e.g. at login, the
    /// browser from the `User-Agent`, or what the user typed): stored with the session by
    /// this request's create or save, listed in
    /// [`SessionInfo::label`](crate::SessionInfo::label), kept across id rotations (not
    /// when the new session gets another owner: another user logging in). At
    /// most [`MAX_LABEL_CHARS`](MAX_LABEL_CHARS) characters are kept. With a
    /// cipher it is stored sealed, like the data. From a handler, use the adapter's way
    /// (`SessionOwnerExt::set_label` in Axum and Actix Web, `Session::set_label` in
    /// Rocket).
    ///
    /// ```
    /// use session_store_core::{MemoryBackend, RequestScope, SessionData, SessionStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = SessionStore::builder(MemoryBackend::new()).build().await?;
    /// let login = RequestScope::new();
    /// login.set_owner("user-42");
    /// login.set_label("Firefox on Linux");
    /// store.in_scope(&login).create(&SessionData::new(), None).await?;
    /// let devices = store.sessions_of("user-42").await?;
    /// assert_eq!(devices[0].label.as_deref(), Some("Firefox on Linux"));
    /// # Ok::<(), session_store_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn set_label(&self, label: impl Into<String>) {
        let mut label = label.into();
        if let Some((cut, _)) = label.char_indices().nth(crate::MAX_LABEL_CHARS) {
            label.truncate(cut);
        }
        self.lock().label = Some(label);
    }

    /// The scope of the request whose future is running in [`run`](RequestScope::run),
    /// if any: what an adapter's store reads once per call, at its boundary, to pass on
    /// with [`SessionStore::in_scope`](crate::SessionStore::in_scope).
    #[must_use]
    pub fn current() -> Option<Self> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// [`current`](Self::current), or, outside a request scope,
    /// [`Error::NoRequestScope`](crate::Error::NoRequestScope) naming `option` (what
    /// needed it): for an adapter's methods that would otherwise do nothing without a word.
    ///
    /// # Errors
    ///
    /// [`Error::NoRequestScope`](crate::Error::NoRequestScope) outside a scope.
    pub fn required(option: &'static str) -> Result<Self, crate::Error> {
        Self::current().ok_or(crate::Error::NoRequestScope { option })
    }

    pub(crate) fn binding(&self) -> Option<&str> {
        self.inner.binding.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, ScopeState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn base(&self, key: &str) -> Option<Base> {
        self.lock().bases.get(key).cloned()
    }

    /// Whether the request loaded or wrote `key`.
    pub(crate) fn knows(&self, key: &str) -> bool {
        self.lock().bases.contains_key(key)
    }

    /// The token of the lease the request holds on `key`, if any.
    pub(crate) fn lease(&self, key: &str) -> Option<String> {
        self.lock().leases.get(key).map(|held| held.token.clone())
    }

    pub(crate) fn remember(&self, key: &str, base: Base) {
        self.lock().bases.insert(key.to_owned(), base);
    }

    /// The request loaded the owned session under `key`: unless it writes it, `finish`
    /// records the visit through `store`.
    pub(crate) fn visited(&self, key: &str, visit: Visit) {
        self.lock().visits.insert(key.to_owned(), visit);
    }

    /// The request wrote the session under `key` (the write moved its "last seen").
    pub(crate) fn wrote(&self, key: &str) {
        self.lock().visits.remove(key);
    }

    pub(crate) fn hold(&self, key: &str, held: Held) {
        self.lock().leases.insert(key.to_owned(), held);
    }

    /// The lease on `key` was released (by a save) or is gone with its document.
    pub(crate) fn released(&self, key: &str) {
        self.lock().leases.remove(key);
    }

    /// The session under `key` is gone; if this request had loaded it, someone else
    /// ended it.
    pub(crate) fn gone(&self, key: &str, by_us: bool) {
        let mut state = self.lock();
        state.leases.remove(key);
        state.visits.remove(key);
        if let Some(base) = state.bases.remove(key) {
            if by_us {
                state.ended_created = earliest(state.ended_created, base.created_at);
                if state.ended_owner.is_none() {
                    state.ended_owner = base.owner;
                }
                if state.ended_label.is_none() {
                    state.ended_label = base.label;
                }
            } else {
                state.ended = true;
            }
        }
    }

    /// The owner a handler set in this request ([`RequestScope::set_owner`]).
    pub(crate) fn owner(&self) -> Option<String> {
        self.lock().owner.clone()
    }

    /// The label a handler set in this request ([`RequestScope::set_label`]).
    pub(crate) fn label(&self) -> Option<String> {
        self.lock().label.clone()
    }

    /// The stored label of the sessions this request loaded (those it ended included).
    pub(crate) fn loaded_label(&self) -> Option<String> {
        let state = self.lock();
        state
            .bases
            .values()
            .find_map(|b| b.label.clone())
            .or_else(|| state.ended_label.clone())
    }

    /// The stored owner of the sessions this request loaded (those it ended included).
    pub(crate) fn loaded_owner(&self) -> Option<String> {
        let state = self.lock();
        state
            .bases
            .values()
            .find_map(|b| b.owner.clone())
            .or_else(|| state.ended_owner.clone())
    }

    /// The earliest creation time among the sessions this request loaded (those it has
    /// ended included): what a session it creates now inherits, so an id rotation does not
    /// restart the absolute lifetime.
    pub(crate) fn earliest_created(&self) -> Option<OffsetDateTime> {
        let state = self.lock();
        state
            .bases
            .values()
            .map(|b| b.created_at)
            .fold(state.ended_created, earliest)
    }
}

/// The earlier of two optional instants.
fn earliest(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A future running inside a [`RequestScope`] (see [`RequestScope::run`]).
#[must_use = "futures do nothing unless awaited"]
pub struct Scoped<F> {
    scope: RequestScope,
    inner: Pin<Box<F>>,
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

struct Restore(Option<RequestScope>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let previous = CURRENT.with(|c| c.replace(Some(this.scope.clone())));
        let _restore = Restore(previous);
        this.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_is_current_only_while_its_future_is_polled() {
        let scope = RequestScope::bound(Some("b".into()));
        assert!(RequestScope::current().is_none());
        let seen =
            futures_util::FutureExt::now_or_never(scope.run(async {
                RequestScope::current().and_then(|s| s.binding().map(str::to_owned))
            }));
        assert_eq!(seen, Some(Some("b".to_owned())));
        assert!(RequestScope::current().is_none());
    }
}
