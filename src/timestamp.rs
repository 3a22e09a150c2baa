//! Conversions between `SystemTime` and protobuf's `Timestamp`, shared by
//! the log's event messages (`store`) and the API's messages (`api`), so
//! both read and write times alike.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Converts a time to a protobuf timestamp.
pub fn system_to_timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// Converts a protobuf timestamp to a time; before 1970 is 1970.
pub fn timestamp_to_system(t: &prost_types::Timestamp) -> SystemTime {
    let secs = u64::try_from(t.seconds).unwrap_or(0);
    let nanos = u32::try_from(t.nanos).unwrap_or(0).min(999_999_999);
    UNIX_EPOCH + Duration::new(secs, nanos)
}
