//! The backend behind `dyn`: [`DocumentBackend`] keeps `async fn`s and its own error
//! type for implementers; the store holds any backend as a [`Backend`] object, so no
//! store type names its backend.

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

fn stream<E: std::error::Error + Send + Sync + 'static>(
    s: DocumentStream<E>,
) -> DocumentStream<BoxError> {
    s.map(|item| item.map_err(boxed)).boxed()
}

impl<B: DocumentBackend> Backend for B {
    fn prepare(&self, auto_remove: AutoRemove) -> Done<'_, ()> {
        DocumentBackend::prepare(self, auto_remove)
            .map(|r| r.map_err(boxed))
            .boxed()
    }

    fn find<'a>(&'a self, key: &'a str, now: OffsetDateTime) -> Done<'a, Option<StoredDocument>> {
        DocumentBackend::find(self, key, now)
            .map(|r| r.map_err(boxed))
            .boxed()
    }

    fn insert<'a>(&'a self, doc: &'a StoredDocument) -> Done<'a, InsertOutcome> {
        DocumentBackend::insert(self, doc)
            .map(|r| r.map_err(boxed))
            .boxed()
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        now: OffsetDateTime,
        update: &'a DocumentUpdate,
    ) -> Done<'a, bool> {
        DocumentBackend::update(self, key, now, update)
            .map(|r| r.map_err(boxed))
            .boxed()
    }

    fn acquire<'a>(
        &'a self,
        key: &'a str,
        now: OffsetDateTime,
        token: &'a str,
        until: OffsetDateTime,
    ) -> Done<'a, Acquire> {
        DocumentBackend::acquire(self, key, now, token, until)
            .map(|r| r.map_err(boxed))
            .boxed()
    }

    fn release<'a>(&'a self, key: &'a str, token: &'a str) -> Done<'a, bool> {
        DocumentBackend::release(self, key, token)
            .map(|r| r.map_err(boxed))
            .boxed()
    }

    fn delete<'a>(&'a self, key: &'a str) -> Done<'a, bool> {
        DocumentBackend::delete(self, key)
            .map(|r| r.map_err(boxed))
            .boxed()
    }

    fn find_owned<'a>(
        &'a self,
        owners: &'a [String],
        now: OffsetDateTime,
    ) -> Done<'a, Vec<StoredDocument>> {
        DocumentBackend::find_owned(self, owners, now)
            .map(|r| r.map_err(boxed))
            .boxed()
    }

    fn delete_owned<'a>(
        &'a self,
        owners: &'a [String],
        only: Option<&'a str>,
        except: Option<&'a str>,
    ) -> Done<'a, u64> {
        DocumentBackend::delete_owned(self, owners, only, except)
            .map(|r| r.map_err(boxed))
            .boxed()
    }

    fn unowned(&self, now: OffsetDateTime) -> Done<'_, DocumentStream<BoxError>> {
        DocumentBackend::unowned(self, now)
            .map(|r| r.map(stream).map_err(boxed))
            .boxed()
    }

    fn delete_expired(&self, now: OffsetDateTime) -> Done<'_, u64> {
        DocumentBackend::delete_expired(self, now)
            .map(|r| r.map_err(boxed))
            .boxed()
    }

    fn count(&self, now: OffsetDateTime) -> Done<'_, u64> {
        DocumentBackend::count(self, now)
            .map(|r| r.map_err(boxed))
            .boxed()
    }

    fn all(&self, now: OffsetDateTime) -> Done<'_, DocumentStream<BoxError>> {
        DocumentBackend::all(self, now)
            .map(|r| r.map(stream).map_err(boxed))
            .boxed()
    }

    fn clear(&self) -> Done<'_, ()> {
        DocumentBackend::clear(self)
            .map(|r| r.map_err(boxed))
            .boxed()
    }

    fn close(&self) -> Done<'_, ()> {
        DocumentBackend::close(self)
            .map(|r| r.map_err(boxed))
            .boxed()
    }
}
