//! Timestamps as brewblox services write them in their JSON.

use std::time::SystemTime;

/// Formats `time` as brewblox services do: RFC 3339 in UTC with milliseconds, always three
/// fractional digits (RFC 3339's well-known format trims zeros), so the text sorts like the
/// time.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// let time = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
/// assert_eq!(plugin_api::rfc3339(time), "2023-11-14T22:13:20.123Z");
/// assert_eq!(plugin_api::rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
/// ```
pub fn rfc3339(time: SystemTime) -> String {
    let time = time::OffsetDateTime::from(time);
    time.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    // Only a year outside 0..=9999 cannot be written so; seconds since 1970 say it still.
    .unwrap_or_else(|_| time.unix_timestamp().to_string())
}
