//! The `202 Accepted` answer with per-event outcomes, written by ingests and read by senders.

use serde::{Deserialize, Serialize};

/// One refused event in an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedEvent {
    /// The event's id (empty when it had none).
    pub id: String,
    /// Rejection code (`timestamp_in_future`, …).
    pub code: String,
    /// The offending field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What was wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One accepted-but-flagged event in an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlaggedEvent {
    /// The event's id.
    pub id: String,
    /// The flag (`late`).
    pub flag: String,
}

/// `{"accepted": 2, "duplicates": 1, "rejected": [...], "flagged": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAnswer {
    /// Newly stored events.
    #[serde(default)]
    pub accepted: u64,
    /// Events already stored before (not counted again).
    #[serde(default)]
    pub duplicates: u64,
    /// Refused events, by id.
    #[serde(default)]
    pub rejected: Vec<RejectedEvent>,
    /// Accepted events carrying a flag.
    #[serde(default)]
    pub flagged: Vec<FlaggedEvent>,
}

impl IngestAnswer {
    /// Reads an answer; `None` for a body that is not one (such as an empty 204).
    pub fn parse(body: &[u8]) -> Option<Self> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        serde_json::from_slice(body).ok()
    }

    /// The answer as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_and_tolerate_missing_parts() {
        let a = IngestAnswer {
            accepted: 2,
            duplicates: 1,
            rejected: vec![RejectedEvent {
                id: "e".into(),
                code: "timestamp_in_future".into(),
                field: None,
                message: None,
            }],
            flagged: vec![FlaggedEvent {
                id: "f".into(),
                flag: "late".into(),
            }],
        };
        assert_eq!(IngestAnswer::parse(&a.to_json()), Some(a));
        assert_eq!(
            IngestAnswer::parse(b"{\"accepted\": 3}").unwrap().accepted,
            3
        );
        assert_eq!(IngestAnswer::parse(b""), None);
        assert_eq!(IngestAnswer::parse(b"not json"), None);
    }
}
