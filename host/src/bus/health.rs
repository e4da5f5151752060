//! The serialisable health report (`GET /{name}/_service/health` embeds it).
//!
//! Format (stable; new fields may be added):
//! ```json
//! {"state": "disabled"|"connecting"|"connected", "reconnects": 0, "last_error": null,
//!  "broker": "amqp://guest@node1:5672/%2f"|null,
//!  "listener":  {"state": "...", "reconnects": 0, "last_error": null, "blocked": false,
//!                "broker": "amqp://guest@node1:5672/%2f"|null},
//!  "publisher": {"state": "...", "reconnects": 0, "last_error": null, "blocked": false,
//!                "broker": null},
//!  "subscriptions": [{"id": 1, "exchange": "brewcast", "routing": "#", "exchange_type": "topic",
//!                     "state": "pending"|"active"|"failed", "queue": "amq.gen-…"|null,
//!                     "error": null|"…", "plugin": "history-plugin"|null}]}
//! ```
//! `state` is `disabled` while nothing needed the broker (no subscription, nothing published),
//! `connected` when every connection in use is up, `connecting` otherwise. `reconnects` sums
//! both connections; `last_error` is the most recent connection-level error (kept after
//! recovery, for diagnosis). `broker` is the broker of the address list a connection uses
//! now (no password), null while it is not connected; the top-level one is the listener's,
//! else the publisher's. A `failed` subscription is one the broker refused to declare
//! (e.g. exchange type mismatch); it is retried with back-off.

use schemars::JsonSchema;
use serde::Serialize;

use super::config::ExchangeKind;
use super::connection::LinkHealth;
use crate::eventbus::{Subscription, SubscriptionState};

/// `disabled` while nothing needed the broker, `connected` when every connection in use is
/// up, `connecting` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BusState {
    Disabled,
    Connecting,
    Connected,
}

/// One of the two AMQP connections (listener, publisher).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ConnectionHealth {
    pub state: BusState,
    pub reconnects: u64,
    pub last_error: Option<String>,
    /// The broker sent `connection.blocked` (memory/disk alarm): publishes will time out.
    pub blocked: bool,
    /// The broker of the address list in use (no password); null while not connected.
    pub broker: Option<String>,
}

/// One AMQP subscription: a plugin's or one made with `/_debug/subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SubscriptionHealth {
    pub id: u64,
    pub exchange: String,
    pub routing: String,
    pub exchange_type: ExchangeKind,
    /// `pending`, `active`, `failed` (refused by the broker, retried) or `cancelled`.
    pub state: &'static str,
    /// The queue consumed while active: server-named, or a shared or durable subscription's
    /// named queue.
    pub queue: Option<String>,
    /// Why the broker refused it.
    pub error: Option<String>,
    /// The plugin that made it; `None` for `/_debug/subscribe` ones.
    pub plugin: Option<String>,
}

/// The AMQP eventbus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct BusHealth {
    pub state: BusState,
    /// Reconnects of both connections.
    pub reconnects: u64,
    /// The most recent connection error, kept after recovery for diagnosis.
    pub last_error: Option<String>,
    /// The broker the listener uses, else the one the publisher uses (no password).
    pub broker: Option<String>,
    pub listener: ConnectionHealth,
    pub publisher: ConnectionHealth,
    pub subscriptions: Vec<SubscriptionHealth>,
}

impl BusHealth {
    /// True when the bus is usable or deliberately unused (not `connecting`).
    pub fn is_ok(&self) -> bool {
        self.state != BusState::Connecting
    }
}

pub(crate) fn combine(
    listener: LinkHealth,
    publisher: LinkHealth,
    subs: &[Subscription],
) -> BusHealth {
    let used: Vec<BusState> = [listener.state, publisher.state]
        .into_iter()
        .filter(|s| *s != BusState::Disabled)
        .collect();
    let state = if used.is_empty() {
        BusState::Disabled
    } else if used.iter().all(|s| *s == BusState::Connected) {
        BusState::Connected
    } else {
        BusState::Connecting
    };
    let last_error = match (&listener.last_error, &publisher.last_error) {
        (Some(l), Some(p)) => Some(if l.1 >= p.1 { l.0.clone() } else { p.0.clone() }),
        (Some(l), None) => Some(l.0.clone()),
        (None, Some(p)) => Some(p.0.clone()),
        (None, None) => None,
    };
    let conn = |h: &LinkHealth| ConnectionHealth {
        state: h.state,
        reconnects: h.reconnects,
        last_error: h.last_error.as_ref().map(|e| e.0.clone()),
        blocked: h.blocked,
        broker: h.broker.clone(),
    };
    BusHealth {
        state,
        reconnects: listener.reconnects + publisher.reconnects,
        last_error,
        broker: listener.broker.clone().or_else(|| publisher.broker.clone()),
        listener: conn(&listener),
        publisher: conn(&publisher),
        subscriptions: subs
            .iter()
            .filter(|s| !s.is_cancelled())
            .map(|s| {
                let st = s.state();
                SubscriptionHealth {
                    id: s.id(),
                    exchange: s.exchange().to_string(),
                    routing: s.routing().to_string(),
                    exchange_type: super::subscription::kind(s),
                    state: st.name(),
                    queue: match &st {
                        SubscriptionState::Active { queue } => Some(queue.clone()),
                        _ => None,
                    },
                    error: match st {
                        SubscriptionState::Failed { error } => Some(error),
                        _ => None,
                    },
                    plugin: s.owner().map(str::to_owned),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn link(state: BusState, err: Option<(&str, Instant)>) -> LinkHealth {
        LinkHealth {
            state,
            reconnects: 1,
            last_error: err.map(|(e, t)| (e.to_string(), t)),
            blocked: false,
            broker: None,
        }
    }

    #[test]
    fn overall_state() {
        let d = BusState::Disabled;
        let c = BusState::Connected;
        let g = BusState::Connecting;
        assert_eq!(combine(link(d, None), link(d, None), &[]).state, d);
        assert_eq!(combine(link(c, None), link(d, None), &[]).state, c);
        assert_eq!(combine(link(c, None), link(g, None), &[]).state, g);
        assert_eq!(combine(link(d, None), link(g, None), &[]).state, g);
        let now = Instant::now();
        let later = now + Duration::from_millis(5);
        let h = combine(
            link(c, Some(("old", now))),
            link(c, Some(("new", later))),
            &[],
        );
        assert_eq!(h.last_error.as_deref(), Some("new"));
        assert_eq!(h.reconnects, 2);
        let json = serde_json::to_value(&h).expect("json");
        assert_eq!(json["state"], "connected");
        assert_eq!(json["listener"]["blocked"], false);
    }
}
