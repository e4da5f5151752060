//! The history across a hot swap: the old generation hands its messages (with the times
//! they were received) and the subscriptions added over HTTP to the new one, as JSON of
//! [`STATE_VERSION`].
//!
//! A handover is at most [`MAX_HANDOVER_BYTES`] (16 MiB) while the store may hold up to
//! 64 MiB: when the whole history does not fit, the newest half of every key's messages is
//! tried, then the newest quarter, and so on down to the last message of each key; if even
//! that does not fit, only the subscriptions are handed over (logged as a warning).
//! The new generation records the messages in the order they arrived, under its own
//! `--history-size` and bounds.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use plugin_api::{Context, HandedOver, Handover, Result, MAX_HANDOVER_BYTES};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{lock, Messages, SubscribeRequest};

/// The format of the handed-over history; a build that changes it moves this on.
pub const STATE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Handed {
    messages: Vec<HandedMessage>,
    subscriptions: Vec<SubscribeRequest>,
}

#[derive(Serialize, Deserialize)]
struct HandedMessage {
    key: String,
    /// When it was received: milliseconds since the Unix epoch.
    received_ms: u64,
    message: Value,
}

/// The history as a handover, within [`MAX_HANDOVER_BYTES`].
pub(crate) fn give(messages: &Messages, subscriptions: Vec<SubscribeRequest>) -> Result<Handover> {
    let store = lock(&messages.store);
    let mut per_key = store.size();
    loop {
        let handed = Handed {
            messages: store
                .in_order(per_key)
                .into_iter()
                .map(|(key, entry)| HandedMessage {
                    key: key.to_owned(),
                    received_ms: millis(entry.received),
                    message: entry.message.clone(),
                })
                .collect(),
            subscriptions: subscriptions.clone(),
        };
        let handover = Handover::json(STATE_VERSION, &handed)?;
        if handover.data().len() <= MAX_HANDOVER_BYTES || handed.messages.is_empty() {
            return Ok(handover);
        }
        if per_key <= 1 {
            tracing::warn!(
                "History too large to hand over even one message per key; only the \
                 subscriptions go to the new generation"
            );
            return Handover::json(
                STATE_VERSION,
                &Handed {
                    messages: Vec::new(),
                    subscriptions,
                },
            );
        }
        per_key /= 2;
        tracing::info!(
            "History too large to hand over whole; trying the newest {per_key} message(s) per key"
        );
    }
}

/// Records what the previous generation handed over into `messages`; the subscriptions it
/// had added, to make again.
pub(crate) fn take(ctx: &Context, messages: &Arc<Messages>, size: usize) -> Vec<SubscribeRequest> {
    match ctx.handed_over::<Handed>(STATE_VERSION) {
        HandedOver::Accepted(handed) => {
            let count = handed.messages.len();
            for message in handed.messages {
                let received = UNIX_EPOCH + Duration::from_millis(message.received_ms);
                lock(&messages.store).record(&message.key, message.message, received);
            }
            tracing::info!(
                "History took over {count} message(s) and {} subscription(s) from the previous \
                 generation (keeping {size} per key)",
                handed.subscriptions.len()
            );
            handed.subscriptions
        }
        HandedOver::Refused(_) | HandedOver::Nothing => Vec::new(),
    }
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
