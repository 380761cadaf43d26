//! What a guest writes into the host's log: its stdout and stderr (captured by
//! [`crate::guest_output`]) and the messages of the `fjord:endpoint/log` import. Each of the three
//! is capped per call (the first [`CAPTURE_BYTES`] kept, the rest dropped with one warning when
//! the call ends), split into lines, each line cut at [`LINE_BYTES`] and tagged with endpoint,
//! method and request id, so a guest can neither grow the host's log without bound nor forge an
//! untagged line.

use crate::guest_api::fjord::endpoint::log::Level;
use crate::guest_api::CallInfo;

/// What a guest may write per call to each of stdout, stderr and the log import.
pub const CAPTURE_BYTES: usize = 64 * 1024;
/// The longest line written to the host's log; the rest of a longer line is cut (and counted in
/// the line). This bounds what a log line queued for the log writer can cost.
pub const LINE_BYTES: usize = 4 * 1024;

/// How much of the log import's share one call has used.
#[derive(Debug, Default)]
pub struct LogBudget {
    kept: usize,
    dropped: usize,
}

impl LogBudget {
    /// The part of `message` that still fits in the call's [`CAPTURE_BYTES`] (cut at a
    /// character boundary); the rest is counted as dropped.
    pub fn take<'a>(&mut self, message: &'a str) -> &'a str {
        let room = CAPTURE_BYTES.saturating_sub(self.kept);
        let kept = prefix(message, room);
        self.kept = self.kept.saturating_add(kept.len());
        self.dropped = self
            .dropped
            .saturating_add(message.len().saturating_sub(kept.len()));
        kept
    }

    /// Bytes dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

/// Writes `text` to the host's log at `level`, one tagged line per line. `stream` names where it
/// came from (`stdout`, `stderr`) and is left out for the log import.
pub fn write(call: &CallInfo, stream: Option<&str>, level: Level, text: &str) {
    for line in text.lines() {
        let cut = prefix(line, LINE_BYTES);
        if cut.len() == line.len() {
            emit(call, stream, level, line);
        } else {
            let more = line.len() - cut.len();
            emit(
                call,
                stream,
                level,
                &format!("{cut}... ({more} more bytes cut)"),
            );
        }
    }
}

/// The one warning of a call whose `stream` went past [`CAPTURE_BYTES`].
pub fn warn_dropped(call: &CallInfo, stream: &str, dropped: usize) {
    if dropped > 0 {
        let request_id = call.request_id().unwrap_or("-");
        tracing::warn!(
            endpoint = %call.endpoint, method = %call.method, request_id, stream,
            "guest output truncated: {dropped} bytes past the first {CAPTURE_BYTES} dropped"
        );
    }
}

fn emit(call: &CallInfo, stream: Option<&str>, level: Level, line: &str) {
    let request_id = call.request_id().unwrap_or("-");
    let (endpoint, method) = (&call.endpoint, &call.method);
    match (stream, level) {
        // A traceback the guest reported with its exception (`fjord:endpoint/failure`).
        (Some(stream), Level::Error) => {
            tracing::error!(%endpoint, %method, request_id, stream, "{line}")
        }
        // stdout and stderr are always info, as before the log import existed.
        (Some(stream), _) => {
            tracing::info!(%endpoint, %method, request_id, stream, "{line}")
        }
        (None, Level::Trace) => {
            tracing::trace!(target: "guest", %endpoint, %method, request_id, "{line}")
        }
        (None, Level::Debug) => {
            tracing::debug!(target: "guest", %endpoint, %method, request_id, "{line}")
        }
        (None, Level::Info) => {
            tracing::info!(target: "guest", %endpoint, %method, request_id, "{line}")
        }
        (None, Level::Warn) => {
            tracing::warn!(target: "guest", %endpoint, %method, request_id, "{line}")
        }
        (None, Level::Error) => {
            tracing::error!(target: "guest", %endpoint, %method, request_id, "{line}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_the_first_bytes_of_the_call() {
        let mut budget = LogBudget::default();
        let big = "a".repeat(CAPTURE_BYTES - 1);
        assert_eq!(budget.take(&big).len(), CAPTURE_BYTES - 1);
        // One byte left: a two-byte character does not fit and is not split.
        assert_eq!(budget.take("é and more"), "");
        assert_eq!(budget.take("b and more"), "b");
        assert_eq!(budget.take("c"), "");
        assert_eq!(budget.dropped(), "é and more".len() + " and more".len() + 1);
    }

    #[test]
    fn prefixes_end_on_character_boundaries() {
        assert_eq!(prefix("héllo", 2), "h");
        assert_eq!(prefix("héllo", 3), "hé");
        assert_eq!(prefix("héllo", 99), "héllo");
        assert_eq!(prefix("", 0), "");
    }
}
