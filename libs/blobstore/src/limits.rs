//! When a value travels inline in an event and when it is offloaded to the store, and how large one may be.

/// A value whose encoding is larger than this is offloaded, by default.
pub const DEFAULT_INLINE_VALUE_LIMIT: usize = 64 * 1024;
/// What the values kept inline in one event may take together: the event log refuses a record over 960 KiB
/// (`aloft_eventlog::MAX_RECORD_BYTES`), and an event carries more than its values.
pub const INLINE_VALUES_BUDGET: usize = 512 * 1024;
/// A value this small stays inline whatever the budget: its reference would take about as much.
pub(crate) const NEVER_OFFLOADED_BELOW: usize = 1024;
/// The largest value (not blob) a task may output by default; larger data belongs in a blob.
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 64 * 1024 * 1024;

/// When a value is offloaded, and how large one may be at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueLimits {
    /// Values whose encoding is larger are offloaded.
    pub inline: usize,
    /// A value whose text is larger is refused.
    pub max: u64,
}

impl Default for ValueLimits {
    fn default() -> ValueLimits {
        ValueLimits {
            inline: DEFAULT_INLINE_VALUE_LIMIT,
            max: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}
