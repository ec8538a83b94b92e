//! The MongoDB server error codes the backend reacts to, by name, and how to read one
//! from a driver error.

use mongodb::error::{ErrorKind, WriteFailure};

/// `DuplicateKey`: an insert found the `_id` taken.
pub(crate) const DUPLICATE_KEY: i32 = 11000;
/// `NamespaceNotFound`: the collection does not exist yet.
pub(crate) const NAMESPACE_NOT_FOUND: i32 = 26;
/// `Unauthorized`: the user lacks a privilege.
pub(crate) const UNAUTHORIZED: i32 = 13;
/// `IndexOptionsConflict`: an index with these keys exists with other options.
pub(crate) const INDEX_OPTIONS_CONFLICT: i32 = 85;
/// `IndexKeySpecsConflict`: an index with this name exists with other keys.
pub(crate) const INDEX_KEY_SPECS_CONFLICT: i32 = 86;
/// `AuthenticationFailed`: wrong user, password, mechanism or `authSource` (the server
/// does not say which).
pub(crate) const AUTHENTICATION_FAILED: i32 = 18;
/// `MaxTimeMSExpired`: the server gave up at the operation's `maxTimeMS`.
pub(crate) const MAX_TIME_MS_EXPIRED: i32 = 50;

/// The server's error code in a driver error, when the server answered with one.
pub(crate) fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

/// The codes after which a write may be sent again: the server was not (or is no longer)
/// the primary, was shutting down, or a network error between the servers (the driver's
/// retryable-writes list).
pub(crate) const RETRYABLE_WRITE_CODES: [i32; 12] = [
    11600, 11602, 10107, 13435, 13436, 189, 91, 7, 6, 89, 9001, 262,
];
