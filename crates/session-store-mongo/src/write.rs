//! Writes as the server's own write commands (`update`, `insert`, `delete`) sent with
//! `runCommand`: bounded on the server by `maxTimeMS`, which the driver's `update_one`,
//! `insert_one` and `delete_one` cannot send; their write concern chosen by purpose; and
//! the replies read into "applied to n documents", a refusal, or an outcome left unknown.
//!
//! Why not the driver's helpers: they are retryable writes on a replica set (the driver
//! resends one after a network error, and the server records each in
//! `config.transactions` to recognise the resend), but they cannot carry `maxTimeMS`, so a
//! write held by a lock would hold its connection until the client gives up. These
//! commands are not retried by the driver; the backend settles an unknown outcome itself by
//! reading the document (`backend.rs`), which every write here allows: each is conditional
//! (`update`), refuses a taken key (`insert`) or is idempotent (`delete`).

use mongodb::bson::{doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{Acknowledgment, WriteConcern};

use session_store_core::backend::{DocumentUpdate, StoredDocument};
use session_store_core::time::OffsetDateTime;

use crate::backend::MongoBackend;
use crate::codes::{command_code, DUPLICATE_KEY, MAX_TIME_MS_EXPIRED, RETRYABLE_WRITE_CODES};
use crate::command::Failed;
use crate::convert;
use crate::error::MongoError;

/// What a write is for, which decides its write concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Saving, touching, creating, releasing a lease: the write concern the application
    /// configured (on the client, the URI's `w`, or the builder's collection options), else
    /// the server's default.
    Ordinary,
    /// Ending sessions (logout, id rotation, revocation): acknowledged by a majority
    /// whatever is configured, so that a failover cannot bring an ended session back.
    Ending,
}

/// What the server said of a write it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// It applied to this many documents (`n`: matched for an update, deleted for a
    /// delete, inserted for an insert).
    To(u64),
    /// An insert found the key taken; nothing was written.
    DuplicateKey,
}

/// Why a write failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// It may or may not have been applied (the connection failed before the reply), or it
    /// was not applied for a reason that passes (the primary stepped down): read the
    /// document to know, and send it again if it was not applied.
    Unsettled(MongoError),
    /// It failed for good: nothing to settle.
    Failed(MongoError),
}

impl Failure {
    pub(crate) fn into_error(self) -> MongoError {
        match self {
            Self::Unsettled(e) | Self::Failed(e) => e,
        }
    }
}

impl From<MongoError> for Failure {
    fn from(e: MongoError) -> Self {
        Self::Failed(e)
    }
}

impl Failed for Failure {
    fn error_type(&self) -> String {
        match self {
            Self::Unsettled(e) | Self::Failed(e) => e.error_type(),
        }
    }
}

/// One write command: `name` (`update`, `insert`, `delete`) on the sessions collection,
/// its one statement in the list `list` (`updates`, `documents`, `deletes`).
pub(crate) struct Write {
    pub(crate) operation: &'static str,
    pub(crate) name: &'static str,
    pub(crate) list: &'static str,
    pub(crate) statement: Document,
    pub(crate) purpose: Purpose,
}

/// How many documents a write applied to (none when an insert found its key taken).
pub(crate) fn count(applied: Applied) -> u64 {
    match applied {
        Applied::To(n) => n,
        Applied::DuplicateKey => 0,
    }
}

/// Inserts `doc`.
pub(crate) fn insert_write(doc: &StoredDocument) -> Write {
    Write {
        operation: "insert",
        name: "insert",
        list: "documents",
        statement: convert::to_document(doc),
        purpose: Purpose::Ordinary,
    }
}

/// Applies `update` to the document under `key` if it meets the update's conditions (in
/// the filter, with the `_id` index hinted so the query is never planned).
pub(crate) fn update_write(key: &str, now: OffsetDateTime, update: &DocumentUpdate) -> Write {
    Write {
        operation: "update",
        name: "update",
        list: "updates",
        statement: doc! {
            "q": convert::update_filter(key, now, update),
            "u": convert::update_modifiers(update),
            "hint": { convert::ID: 1 },
        },
        purpose: Purpose::Ordinary,
    }
}

/// Releases the lease `token` holds on the document under `key`.
pub(crate) fn release_write(key: &str, token: &str) -> Write {
    Write {
        operation: "release",
        name: "update",
        list: "updates",
        statement: doc! {
            "q": { convert::ID: key, convert::LEASE_TOKEN: token },
            "u": { "$unset": { convert::LEASE_TOKEN: "", convert::LEASE_UNTIL: "" } },
        },
        purpose: Purpose::Ordinary,
    }
}

/// Sets `updatedAt` of the live document under `key` to `at` when it is missing or
/// earlier than `seen_before` (sending it again matches nothing).
pub(crate) fn seen_write(key: &str, at: OffsetDateTime, seen_before: OffsetDateTime) -> Write {
    let mut filter = convert::live_key(key, at);
    filter.insert(
        convert::UPDATED_AT,
        doc! { "$not": { "$gte": convert::to_bson_date(seen_before) } },
    );
    Write {
        operation: "record_seen",
        name: "update",
        list: "updates",
        statement: doc! {
            "q": filter,
            "u": { "$set": { convert::UPDATED_AT: convert::to_bson_date(at) } },
            "hint": { convert::ID: 1 },
        },
        purpose: Purpose::Ordinary,
    }
}

/// Deletes the document under `key` (ending a session: majority).
pub(crate) fn delete_write(key: &str) -> Write {
    Write {
        operation: "delete",
        name: "delete",
        list: "deletes",
        statement: doc! { "q": { convert::ID: key }, "limit": 1 },
        purpose: Purpose::Ending,
    }
}

/// Whether `found` is the document `sent` by an insert whose reply was lost (same payload
/// and expiry: the payload of a new session is this request's alone).
pub(crate) fn is_inserted(found: &StoredDocument, sent: &StoredDocument) -> bool {
    found.session == sent.session && same_time(found.expires, sent.expires)
}

/// Whether `found` shows `update` applied: its expiry, its payload (and so the version
/// after the expected one), its lease released.
pub(crate) fn is_updated(found: &StoredDocument, update: &DocumentUpdate) -> bool {
    same_time(found.expires, Some(update.expires))
        && update
            .session
            .as_ref()
            .is_none_or(|p| found.session.as_ref() == Some(p))
        && update
            .if_version
            .filter(|_| update.session.is_some())
            .is_none_or(|v| found.version == Some(v + 1))
        && update
            .if_lease
            .as_ref()
            .is_none_or(|t| found.lease_token.as_ref() != Some(t))
}

/// Equal to the millisecond, as MongoDB stores times.
fn same_time(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> bool {
    a.map(convert::to_bson_date) == b.map(convert::to_bson_date)
}

impl MongoBackend {
    /// Sends `write` as one command (its span, its bounds, finished if the caller goes
    /// away).
    pub(crate) async fn write_once(&self, write: Write) -> Result<Applied, Failure> {
        let this = self.clone();
        let (operation, name) = (write.operation, write.name);
        self.command(operation, name, async move { this.send(write).await })
            .await
    }

    /// Sends again a write whose first outcome was settled as not applied; a second
    /// failure is reported as it is.
    pub(crate) async fn resend(&self, write: Write) -> Result<Applied, MongoError> {
        self.write_once(write).await.map_err(Failure::into_error)
    }

    /// Sends a write that may be sent twice (conditional on what it changes, or
    /// idempotent), once more when the first outcome is unknown.
    pub(crate) async fn write_settled(
        &self,
        write: impl Fn() -> Write,
    ) -> Result<Applied, MongoError> {
        match self.write_once(write()).await {
            Err(Failure::Unsettled(_)) => self.resend(write()).await,
            other => other.map_err(Failure::into_error),
        }
    }

    /// Sends `write` and reads its reply.
    async fn send(&self, write: Write) -> Result<Applied, Failure> {
        let Write {
            operation,
            name,
            list,
            statement,
            purpose,
        } = write;
        let mut command = doc! {
            name: &self.inner.collection_name,
            list: [statement],
            "maxTimeMS": millis(self.limit()),
        };
        if let Some(concern) = self.write_concern(purpose) {
            command.insert("writeConcern", concern_document(&concern));
        }
        let reply = self
            .client()
            .database(&self.inner.database)
            .run_command(command)
            .await
            .map_err(|e| self.failure(operation, e))?;
        read_reply(operation, &reply)
    }

    /// The write concern of a write for `purpose`; `None` leaves the server's default.
    pub(crate) fn write_concern(&self, purpose: Purpose) -> Option<WriteConcern> {
        let configured = self.collection().write_concern().cloned();
        match purpose {
            Purpose::Ordinary => configured,
            Purpose::Ending => {
                let mut concern = configured.unwrap_or_default();
                concern.w = Some(Acknowledgment::Majority);
                // Without a bound the server waits for a majority for ever (a PSA set
                // with its secondary down): answer within the operation's time limit.
                concern.w_timeout.get_or_insert(self.limit());
                Some(concern)
            }
        }
    }

    /// A driver error of a write command, unsettled when the write may have been applied
    /// or may be sent again.
    fn failure(&self, operation: &'static str, e: mongodb::error::Error) -> Failure {
        let code = command_code(&e);
        if code == Some(MAX_TIME_MS_EXPIRED) {
            // The server gave up before applying it.
            return Failure::Failed(MongoError::Timeout {
                operation,
                timeout: self.timeout(),
            });
        }
        let lost_connection = matches!(
            e.kind.as_ref(),
            ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. }
        );
        let passing = code.is_some_and(|c| RETRYABLE_WRITE_CODES.contains(&c))
            || e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR);
        let error = MongoError::driver(operation, e);
        if lost_connection || passing {
            Failure::Unsettled(error)
        } else {
            Failure::Failed(error)
        }
    }
}

/// The reply of a write command that succeeded as a command: its count, or its first
/// write error or write-concern error.
fn read_reply(operation: &'static str, reply: &Document) -> Result<Applied, Failure> {
    let write_error = reply
        .get_array("writeErrors")
        .ok()
        .and_then(|errors| errors.first())
        .and_then(Bson::as_document);
    if let Some(error) = write_error {
        if error_code(error) == DUPLICATE_KEY {
            return Ok(Applied::DuplicateKey);
        }
        return Err(not_acknowledged(operation, error));
    }
    if let Ok(error) = reply.get_document("writeConcernError") {
        // Applied on the primary, not confirmed as asked; a failover in between is
        // settled like a lost reply.
        let refused = not_acknowledged(operation, error);
        return Err(if RETRYABLE_WRITE_CODES.contains(&error_code(error)) {
            Failure::Unsettled(refused.into_error())
        } else {
            refused
        });
    }
    let n = match reply.get("n") {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        _ => 0,
    };
    Ok(Applied::To(u64::try_from(n).unwrap_or(0)))
}

fn error_code(error: &Document) -> i32 {
    error.get_i32("code").unwrap_or_default()
}

fn not_acknowledged(operation: &'static str, error: &Document) -> Failure {
    Failure::Failed(MongoError::WriteNotAcknowledged {
        operation,
        detail: format!(
            "{} (code {})",
            error.get_str("errmsg").unwrap_or("no message"),
            error_code(error)
        ),
    })
}

/// A write concern as the command field `writeConcern`, written out by hand (bson 2 and 3
/// serialise it differently).
fn concern_document(concern: &WriteConcern) -> Document {
    let mut out = Document::new();
    match &concern.w {
        Some(Acknowledgment::Nodes(n)) => {
            out.insert("w", i64::from(*n));
        }
        Some(Acknowledgment::Majority) => {
            out.insert("w", "majority");
        }
        Some(Acknowledgment::Custom(tag)) => {
            out.insert("w", tag.as_str());
        }
        _ => {}
    }
    if let Some(t) = concern.w_timeout {
        out.insert("wtimeout", millis(t));
    }
    if let Some(j) = concern.journal {
        out.insert("j", j);
    }
    out
}

pub(crate) fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn write_concerns_are_written_as_the_server_reads_them() {
        let mut concern = WriteConcern::default();
        assert_eq!(concern_document(&concern), doc! {});
        concern.w = Some(Acknowledgment::Nodes(2));
        concern.w_timeout = Some(Duration::from_millis(1500));
        concern.journal = Some(true);
        assert_eq!(
            concern_document(&concern),
            doc! { "w": 2_i64, "wtimeout": 1500_i64, "j": true }
        );
        concern.w = Some(Acknowledgment::Custom("dc".into()));
        assert_eq!(concern_document(&concern).get_str("w").ok(), Some("dc"));
    }

    #[test]
    fn replies_are_counts_duplicates_or_failures() {
        let ok = doc! { "n": 1, "nModified": 1, "ok": 1.0 };
        assert!(matches!(read_reply("update", &ok), Ok(Applied::To(1))));
        let duplicate = doc! { "n": 0, "ok": 1.0, "writeErrors": [{ "index": 0, "code": 11000, "errmsg": "E11000" }] };
        assert!(matches!(
            read_reply("insert", &duplicate),
            Ok(Applied::DuplicateKey)
        ));
        let refused = doc! { "n": 0, "ok": 1.0, "writeErrors": [{ "index": 0, "code": 121, "errmsg": "validation" }] };
        assert!(matches!(
            read_reply("update", &refused),
            Err(Failure::Failed(MongoError::WriteNotAcknowledged { .. }))
        ));
        let stepped_down = doc! { "n": 1, "ok": 1.0, "writeConcernError": { "code": 189, "errmsg": "stepped down" } };
        assert!(matches!(
            read_reply("update", &stepped_down),
            Err(Failure::Unsettled(_))
        ));
        let no_majority = doc! { "n": 1, "ok": 1.0, "writeConcernError": { "code": 64, "errmsg": "waiting for replication timed out" } };
        assert!(matches!(
            read_reply("delete", &no_majority),
            Err(Failure::Failed(_))
        ));
    }
}
