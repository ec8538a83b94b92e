//! The touch-after decision: what a save has to write.
//!
//! With a touch window (`touch_after`, connect-mongo's `touchAfter`), saving unchanged
//! data within the window since the last write writes nothing at all, and after it only
//! the expiry (and `lastModified`) is written, never the payload.

use time::{Duration, OffsetDateTime};

use crate::clock::later;

/// What a save writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WritePlan {
    /// Payload and expiry.
    Full,
    /// Expiry (and `lastModified`, `updatedAt`) only.
    Touch,
    /// Nothing.
    Skip,
}

/// Decides what a save writes.
///
/// - `changed`: the data differs from what this process last read or wrote, or it
///   does not know;
/// - `last_modified`: when the document was last written, if known;
/// - `stored_expires`: the expiry it was written with, if known;
/// - `touch_after`: zero means "touch on every save".
///
/// A save is skipped only inside the window and only when the stored expiry outlasts the
/// window: a framework expiry shorter than `touch_after` (e.g. 30 minutes of inactivity
/// with a one-hour window) makes every save touch, so an active session never lapses.
pub(crate) fn plan(
    changed: bool,
    last_modified: Option<OffsetDateTime>,
    stored_expires: Option<OffsetDateTime>,
    touch_after: Duration,
    now: OffsetDateTime,
) -> WritePlan {
    if changed {
        return WritePlan::Full;
    }
    let Some(at) = last_modified else {
        return WritePlan::Touch;
    };
    let window_end = later(at, touch_after);
    let outlasts_window = stored_expires.is_some_and(|e| e > window_end);
    if touch_after.is_positive() && now < window_end && outlasts_window {
        WritePlan::Skip
    } else {
        WritePlan::Touch
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);
    /// A stored expiry far beyond any window.
    const FAR: OffsetDateTime = datetime!(2027-01-01 0:00 UTC);

    #[test]
    fn an_expiry_inside_the_window_is_touched() {
        let w = Duration::hours(1);
        let soon = T0 + Duration::minutes(30);
        assert_eq!(
            plan(false, Some(T0), Some(soon), w, T0 + Duration::minutes(20)),
            WritePlan::Touch
        );
        assert_eq!(
            plan(false, Some(T0), None, w, T0 + Duration::minutes(20)),
            WritePlan::Touch
        );
    }

    #[test]
    fn changed_data_is_always_written_in_full() {
        let w = Duration::minutes(10);
        assert_eq!(plan(true, Some(T0), Some(FAR), w, T0), WritePlan::Full);
        assert_eq!(
            plan(true, None, Some(FAR), Duration::ZERO, T0),
            WritePlan::Full
        );
    }

    #[test]
    fn unchanged_inside_the_window_writes_nothing() {
        let w = Duration::minutes(10);
        assert_eq!(plan(false, Some(T0), Some(FAR), w, T0), WritePlan::Skip);
        assert_eq!(
            plan(false, Some(T0), Some(FAR), w, T0 + Duration::minutes(9)),
            WritePlan::Skip
        );
    }

    #[test]
    fn unchanged_at_or_after_the_window_touches() {
        let w = Duration::minutes(10);
        assert_eq!(
            plan(false, Some(T0), Some(FAR), w, T0 + w),
            WritePlan::Touch
        );
        assert_eq!(
            plan(false, Some(T0), Some(FAR), w, T0 + Duration::hours(1)),
            WritePlan::Touch
        );
    }

    #[test]
    fn without_a_window_or_a_known_write_time_every_save_touches() {
        assert_eq!(
            plan(false, Some(T0), Some(FAR), Duration::ZERO, T0),
            WritePlan::Touch
        );
        assert_eq!(
            plan(false, None, Some(FAR), Duration::minutes(10), T0),
            WritePlan::Touch
        );
    }

    #[test]
    fn a_clock_that_went_backwards_still_skips_rather_than_writes() {
        let w = Duration::minutes(10);
        assert_eq!(
            plan(false, Some(T0), Some(FAR), w, T0 - Duration::minutes(1)),
            WritePlan::Skip
        );
    }
}
