//! The backend behind `dyn`: [`DocumentBackend`] keeps `async fn`s and its own error
//! type for implementers; the store holds any backend as a [`Backend`] object, so no
//! store type names its backend.

use std::future::Future;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt as _, StreamExt as _};
use time::OffsetDateTime;

use crate::backend::{
    Acquire, DocumentBackend, DocumentStream, DocumentUpdate, InsertOutcome, StoredDocument,
};
use crate::error::BoxError;
use crate::options::AutoRemove;

type Done<'a, T> = BoxFuture<'a, Result<T, BoxError>>;

/// [`DocumentBackend`], object safe: boxed futures, boxed errors.
pub(crate) trait Backend: Send + Sync + 'static {
    fn prepare(&self, auto_remove: AutoRemove) -> Done<'_, ()>;
    fn find<'a>(&'a self, key: &'a str, now: OffsetDateTime) -> Done<'a, Option<StoredDocument>>;
    fn insert<'a>(&'a self, doc: &'a StoredDocument) -> Done<'a, InsertOutcome>;
    fn update<'a>(
        &'a self,
        key: &'a str,
        now: OffsetDateTime,
        update: &'a DocumentUpdate,
    ) -> Done<'a, bool>;
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        now: OffsetDateTime,
        token: &'a str,
        until: OffsetDateTime,
    ) -> Done<'a, Acquire>;
    fn release<'a>(&'a self, key: &'a str, token: &'a str) -> Done<'a, bool>;
    fn delete<'a>(&'a self, key: &'a str) -> Done<'a, bool>;
    fn record_seen<'a>(
        &'a self,
        key: &'a str,
        at: OffsetDateTime,
        seen_before: OffsetDateTime,
    ) -> Done<'a, bool>;
    fn find_owned<'a>(
        &'a self,
        owners: &'a [String],
        now: OffsetDateTime,
    ) -> Done<'a, Vec<StoredDocument>>;
    fn delete_owned<'a>(
        &'a self,
        owners: &'a [String],
        only: Option<&'a str>,
        except: Option<&'a str>,
    ) -> Done<'a, u64>;
    fn unowned(&self, now: OffsetDateTime) -> Done<'_, DocumentStream<BoxError>>;
    fn delete_expired(&self, now: OffsetDateTime) -> Done<'_, u64>;
    fn count(&self, now: OffsetDateTime) -> Done<'_, u64>;
    fn all(&self, now: OffsetDateTime) -> Done<'_, DocumentStream<BoxError>>;
    fn clear(&self) -> Done<'_, ()>;
    fn close(&self) -> Done<'_, ()>;
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(e: E) -> BoxError {
    Box::new(e)
}

/// A backend call's future, boxed, with its error boxed.
fn erase<'a, T, E: std::error::Error + Send + Sync + 'static>(
    call: impl Future<Output = Result<T, E>> + Send + 'a,
) -> Done<'a, T> {
    call.map(|r| r.map_err(boxed)).boxed()
}

/// [`erase`] for a call that returns a stream, whose items' errors are boxed too.
fn erase_stream<'a, E: std::error::Error + Send + Sync + 'static>(
    call: impl Future<Output = Result<DocumentStream<E>, E>> + Send + 'a,
) -> Done<'a, DocumentStream<BoxError>> {
    erase(call.map(|r| r.map(|s| s.map(|item| item.map_err(boxed)).boxed())))
}

impl<B: DocumentBackend> Backend for B {
    fn prepare(&self, auto_remove: AutoRemove) -> Done<'_, ()> {
        erase(DocumentBackend::prepare(self, auto_remove))
    }

    fn find<'a>(&'a self, key: &'a str, now: OffsetDateTime) -> Done<'a, Option<StoredDocument>> {
        erase(DocumentBackend::find(self, key, now))
    }

    fn insert<'a>(&'a self, doc: &'a StoredDocument) -> Done<'a, InsertOutcome> {
        erase(DocumentBackend::insert(self, doc))
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        now: OffsetDateTime,
        update: &'a DocumentUpdate,
    ) -> Done<'a, bool> {
        erase(DocumentBackend::update(self, key, now, update))
    }

    fn acquire<'a>(
        &'a self,
        key: &'a str,
        now: OffsetDateTime,
        token: &'a str,
        until: OffsetDateTime,
    ) -> Done<'a, Acquire> {
        erase(DocumentBackend::acquire(self, key, now, token, until))
    }

    fn release<'a>(&'a self, key: &'a str, token: &'a str) -> Done<'a, bool> {
        erase(DocumentBackend::release(self, key, token))
    }

    fn delete<'a>(&'a self, key: &'a str) -> Done<'a, bool> {
        erase(DocumentBackend::delete(self, key))
    }

    fn record_seen<'a>(
        &'a self,
        key: &'a str,
        at: OffsetDateTime,
        seen_before: OffsetDateTime,
    ) -> Done<'a, bool> {
        erase(DocumentBackend::record_seen(self, key, at, seen_before))
    }

    fn find_owned<'a>(
        &'a self,
        owners: &'a [String],
        now: OffsetDateTime,
    ) -> Done<'a, Vec<StoredDocument>> {
        erase(DocumentBackend::find_owned(self, owners, now))
    }

    fn delete_owned<'a>(
        &'a self,
        owners: &'a [String],
        only: Option<&'a str>,
        except: Option<&'a str>,
    ) -> Done<'a, u64> {
        erase(DocumentBackend::delete_owned(self, owners, only, except))
    }

    fn unowned(&self, now: OffsetDateTime) -> Done<'_, DocumentStream<BoxError>> {
        erase_stream(DocumentBackend::unowned(self, now))
    }

    fn delete_expired(&self, now: OffsetDateTime) -> Done<'_, u64> {
        erase(DocumentBackend::delete_expired(self, now))
    }

    fn count(&self, now: OffsetDateTime) -> Done<'_, u64> {
        erase(DocumentBackend::count(self, now))
    }

    fn all(&self, now: OffsetDateTime) -> Done<'_, DocumentStream<BoxError>> {
        erase_stream(DocumentBackend::all(self, now))
    }

    fn clear(&self) -> Done<'_, ()> {
        erase(DocumentBackend::clear(self))
    }

    fn close(&self) -> Done<'_, ()> {
        erase(DocumentBackend::close(self))
    }
}
