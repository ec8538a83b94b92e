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
/// - `touch_after`: zero means "touch on every save".
pub(crate) fn plan(
    changed: bool,
    last_modified: Option<OffsetDateTime>,
    touch_after: Duration,
    now: OffsetDateTime,
) -> WritePlan {
    if changed {
        return WritePlan::Full;
    }
    match last_modified {
        Some(at) if touch_after.is_positive() && now < later(at, touch_after) => WritePlan::Skip,
        _ => WritePlan::Touch,
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    #[test]
    fn changed_data_is_always_written_in_full() {
        let w = Duration::minutes(10);
        assert_eq!(plan(true, Some(T0), w, T0), WritePlan::Full);
        assert_eq!(plan(true, None, Duration::ZERO, T0), WritePlan::Full);
    }

    #[test]
    fn unchanged_inside_the_window_writes_nothing() {
        let w = Duration::minutes(10);
        assert_eq!(plan(false, Some(T0), w, T0), WritePlan::Skip);
        assert_eq!(
            plan(false, Some(T0), w, T0 + Duration::minutes(9)),
            WritePlan::Skip
        );
    }

    #[test]
    fn unchanged_at_or_after_the_window_touches() {
        let w = Duration::minutes(10);
        assert_eq!(plan(false, Some(T0), w, T0 + w), WritePlan::Touch);
        assert_eq!(
            plan(false, Some(T0), w, T0 + Duration::hours(1)),
            WritePlan::Touch
        );
    }

    #[test]
    fn without_a_window_or_a_known_write_time_every_save_touches() {
        assert_eq!(plan(false, Some(T0), Duration::ZERO, T0), WritePlan::Touch);
        assert_eq!(
            plan(false, None, Duration::minutes(10), T0),
            WritePlan::Touch
        );
    }

    #[test]
    fn a_clock_that_went_backwards_still_skips_rather_than_writes() {
        let w = Duration::minutes(10);
        assert_eq!(
            plan(false, Some(T0), w, T0 - Duration::minutes(1)),
            WritePlan::Skip
        );
    }
}
