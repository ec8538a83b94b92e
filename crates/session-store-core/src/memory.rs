//! An in-memory backend for unit tests and doc examples. Not for production: nothing
//! is persisted and nothing is shared between processes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::stream;
use time::OffsetDateTime;

use crate::backend::{
    Acquire, DocumentBackend, DocumentStream, DocumentUpdate, InsertOutcome, StoredDocument,
};
use crate::options::AutoRemove;

/// Session documents in a map behind a mutex. Clones share the same map.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    docs: Arc<Mutex<BTreeMap<String, StoredDocument>>>,
}

impl MemoryBackend {
    /// An empty backend.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored document with this key, expired or not (for tests).
    #[must_use]
    pub fn get_raw(&self, key: &str) -> Option<StoredDocument> {
        self.lock().get(key).cloned()
    }

    /// Stores a document as is, replacing any with the same key (for tests that need
    /// malformed or foreign documents).
    pub fn put_raw(&self, doc: StoredDocument) {
        self.lock().insert(doc.key.clone(), doc);
    }

    /// How many documents are stored, expired or not.
    #[must_use]
    pub fn len_raw(&self) -> usize {
        self.lock().len()
    }

    /// Releases the lease `token` holds on `key`; whether it held one.
    fn release_now(&self, key: &str, token: &str) -> bool {
        let mut docs = self.lock();
        match docs.get_mut(key) {
            Some(doc) if doc.lease_token.as_deref() == Some(token) => {
                doc.lease_token = None;
                doc.lease_until = None;
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, StoredDocument>> {
        self.docs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl DocumentBackend for MemoryBackend {
    type Error = Infallible;

    async fn prepare(&self, _auto_remove: AutoRemove) -> Result<(), Infallible> {
        Ok(())
    }

    async fn find(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<StoredDocument>, Infallible> {
        Ok(self.lock().get(key).filter(|d| d.is_live(now)).cloned())
    }

    async fn insert(&self, doc: &StoredDocument) -> Result<InsertOutcome, Infallible> {
        let mut docs = self.lock();
        if docs.contains_key(&doc.key) {
            return Ok(InsertOutcome::DuplicateKey);
        }
        docs.insert(doc.key.clone(), doc.clone());
        Ok(InsertOutcome::Inserted)
    }

    async fn update(
        &self,
        key: &str,
        now: OffsetDateTime,
        update: &DocumentUpdate,
    ) -> Result<bool, Infallible> {
        let mut docs = self.lock();
        let Some(doc) = docs.get_mut(key).filter(|d| d.matches(now, update)) else {
            return Ok(false);
        };
        doc.apply(update);
        Ok(true)
    }

    async fn acquire(
        &self,
        key: &str,
        now: OffsetDateTime,
        token: &str,
        until: OffsetDateTime,
    ) -> Result<Acquire, Infallible> {
        let mut docs = self.lock();
        let Some(doc) = docs.get_mut(key).filter(|d| d.is_live(now)) else {
            return Ok(Acquire::Missing);
        };
        if doc.is_leased(now) {
            return Ok(Acquire::Held);
        }
        doc.lease_token = Some(token.to_owned());
        doc.lease_until = Some(until);
        Ok(Acquire::Acquired(Box::new(doc.clone())))
    }

    async fn find_owned(
        &self,
        owners: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<StoredDocument>, Infallible> {
        Ok(self
            .lock()
            .values()
            .filter(|d| d.is_live(now) && d.owner.as_ref().is_some_and(|o| owners.contains(o)))
            .map(|d| StoredDocument {
                session: None,
                ..d.clone()
            })
            .collect())
    }

    async fn delete_owned(
        &self,
        owners: &[String],
        only: Option<&str>,
        except: Option<&str>,
    ) -> Result<u64, Infallible> {
        let mut docs = self.lock();
        let before = docs.len();
        docs.retain(|key, d| {
            let chosen = d.owner.as_ref().is_some_and(|o| owners.contains(o))
                && only.is_none_or(|k| k == key)
                && except.is_none_or(|k| k != key);
            !chosen
        });
        Ok((before - docs.len()) as u64)
    }

    async fn unowned(&self, now: OffsetDateTime) -> Result<DocumentStream<Infallible>, Infallible> {
        let docs: Vec<_> = self
            .lock()
            .values()
            .filter(|d| d.is_live(now) && d.owner.is_none())
            .cloned()
            .map(Ok)
            .collect();
        Ok(Box::pin(stream::iter(docs)))
    }

    async fn release(&self, key: &str, token: &str) -> Result<bool, Infallible> {
        Ok(self.release_now(key, token))
    }

    async fn delete(&self, key: &str) -> Result<bool, Infallible> {
        Ok(self.lock().remove(key).is_some())
    }

    async fn record_seen(
        &self,
        key: &str,
        at: OffsetDateTime,
        seen_before: OffsetDateTime,
    ) -> Result<bool, Infallible> {
        let mut docs = self.lock();
        match docs.get_mut(key) {
            Some(doc) if doc.is_live(at) && doc.updated_at.is_none_or(|t| t < seen_before) => {
                doc.updated_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, Infallible> {
        let mut docs = self.lock();
        let before = docs.len();
        docs.retain(|_, d| d.is_live(now));
        Ok((before - docs.len()) as u64)
    }

    async fn count(&self, now: OffsetDateTime) -> Result<u64, Infallible> {
        Ok(self.lock().values().filter(|d| d.is_live(now)).count() as u64)
    }

    async fn all(&self, now: OffsetDateTime) -> Result<DocumentStream<Infallible>, Infallible> {
        let docs: Vec<_> = self
            .lock()
            .values()
            .filter(|d| d.is_live(now))
            .cloned()
            .map(Ok)
            .collect();
        Ok(Box::pin(stream::iter(docs)))
    }

    async fn clear(&self) -> Result<(), Infallible> {
        self.lock().clear();
        Ok(())
    }

    async fn close(&self) -> Result<(), Infallible> {
        Ok(())
    }
}
