//! Bus settings and the exchange type.
//!
//! Kept apart from the connection code so the CLI layer can build a [`BusConfig`] without
//! touching lapin, and so the password-redacting `Debug` lives next to the field it protects.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use serde::Serialize;

use super::error::BusError;

/// The AMQP exchange types brewblox-service 0.20.0 accepts (`exchange_type` string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeKind {
    /// The original's default.
    #[default]
    Topic,
    Fanout,
    Direct,
}

impl ExchangeKind {
    /// The wire name, as declared on the broker.
    pub fn as_str(&self) -> &'static str {
        match self {
            ExchangeKind::Topic => "topic",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Direct => "direct",
        }
    }

    pub(crate) fn to_lapin(self) -> lapin::ExchangeKind {
        match self {
            ExchangeKind::Topic => lapin::ExchangeKind::Topic,
            ExchangeKind::Fanout => lapin::ExchangeKind::Fanout,
            ExchangeKind::Direct => lapin::ExchangeKind::Direct,
        }
    }
}

impl fmt::Display for ExchangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an exchange type other than topic, fanout or direct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown exchange type {0:?} (expected topic, fanout or direct)")]
pub struct ParseExchangeKindError(pub String);

impl FromStr for ExchangeKind {
    type Err = ParseExchangeKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Without allocating: it runs on every publish.
        let name = s.trim();
        [
            ExchangeKind::Topic,
            ExchangeKind::Fanout,
            ExchangeKind::Direct,
        ]
        .into_iter()
        .find(|kind| kind.as_str().eq_ignore_ascii_case(name))
        .ok_or_else(|| ParseExchangeKindError(s.to_string()))
    }
}

/// The largest AMQP frame we accept (`?frame_max=` in `--eventbus-url` overrides it). lapin
/// keeps two buffers of 32 frames per connection, zero-filled: at RabbitMQ's default of
/// 128 KiB that is 8 MiB of RSS per connection, half of an idle service. Larger messages are
/// simply split over more frames.
pub(crate) const FRAME_MAX: u32 = 16 * 1024;

/// 16 MiB: RabbitMQ's own default `max_message_size` in its 4.x docs (3.x allows 128 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

/// Everything the bus needs to reach the broker. `Default` gives the original's values.
#[derive(Clone)]
pub struct BusConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Never logged: `Debug` prints `***`.
    pub password: String,
    pub vhost: String,
    /// `amqp://user:pass@host:port/vhost`; when set it replaces host/port/user/password/vhost.
    pub url: Option<String>,
    /// Pause between connection attempts (the original's `RECONNECT_INTERVAL`, 1 s).
    pub reconnect_interval: Duration,
    /// Requested heartbeat in seconds; the lower of this and the server's wins. A peer that
    /// stays silent for two heartbeats is treated as dead. 0 disables it (not recommended).
    pub heartbeat: u16,
    /// `basic.qos` prefetch per subscription: bounds unacked (and so buffered) messages.
    pub prefetch: u16,
    /// Client property `connection_name`; the bus appends `:listener` / `:publisher`.
    pub connection_name: String,
    /// Upper bound for one `publish` (connect, declare, publish, confirm).
    pub publish_timeout: Duration,
    /// Largest message body published or delivered, in bytes; 0 for no limit. Below the
    /// broker's own `max_message_size`, a too-large publish fails before it reaches the
    /// broker (which would close the channel instead), and a too-large delivery is refused
    /// before it is copied to a handler.
    pub max_message_size: usize,
    /// Upper bound for one connection attempt (TCP + AMQP handshake), so a broker that
    /// accepts TCP but never answers cannot wedge the reconnect loop.
    pub connect_timeout: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            host: "eventbus".to_string(),
            port: 5672,
            user: "guest".to_string(),
            password: "guest".to_string(),
            vhost: "/".to_string(),
            url: None,
            reconnect_interval: Duration::from_secs(1),
            heartbeat: 10,
            prefetch: 100,
            connection_name: "brewblox-host".to_string(),
            publish_timeout: Duration::from_secs(10),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"***")
            .field("vhost", &self.vhost)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("reconnect_interval", &self.reconnect_interval)
            .field("heartbeat", &self.heartbeat)
            .field("prefetch", &self.prefetch)
            .field("connection_name", &self.connection_name)
            .field("publish_timeout", &self.publish_timeout)
            .field("max_message_size", &self.max_message_size)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl BusConfig {
    /// The parsed connection target, with our heartbeat unless the URL names its own.
    pub(crate) fn amqp_uri(&self) -> Result<AMQPUri, BusError> {
        let mut uri = match &self.url {
            Some(url) => url.parse::<AMQPUri>().map_err(|e| {
                // The parser's message may quote the URL; never echo it back (password).
                BusError::InvalidConfig(format!(
                    "invalid eventbus URL {}: {}",
                    redact_url(url),
                    e.replace(url.as_str(), "<url>")
                ))
            })?,
            None => AMQPUri {
                scheme: AMQPScheme::AMQP,
                authority: AMQPAuthority {
                    userinfo: AMQPUserInfo {
                        username: self.user.clone(),
                        password: self.password.clone(),
                    },
                    host: self.host.clone(),
                    port: self.port,
                },
                vhost: self.vhost.clone(),
                query: AMQPQueryString::default(),
            },
        };
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(self.heartbeat);
        }
        if uri.query.frame_max.is_none() {
            uri.query.frame_max = Some(FRAME_MAX);
        }
        Ok(uri)
    }

    /// Where we connect, for logs and health: no password.
    pub fn endpoint(&self) -> String {
        match &self.url {
            Some(url) => redact_url(url),
            None => format!(
                "amqp://{}@{}:{}/{}",
                self.user,
                self.host,
                self.port,
                self.vhost.replace('/', "%2f")
            ),
        }
    }
}

/// Replace the password part of `scheme://user:password@host…` with `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    format!("{}{}:***{}", &url[..scheme_end + 3], user, &rest[at..])
}

/// Declares `exchange` exactly as brewblox-service 0.20.0 does (type `kind`, non-durable,
/// auto-delete, no arguments), so Python and Rust services never hit PRECONDITION_FAILED.
pub(crate) async fn declare_exchange_like_original(
    channel: &lapin::Channel,
    exchange: &str,
    kind: ExchangeKind,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            exchange,
            kind.to_lapin(),
            lapin::options::ExchangeDeclareOptions {
                durable: false,
                auto_delete: true,
                ..lapin::options::ExchangeDeclareOptions::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_kind_parses_and_prints() {
        for k in [
            ExchangeKind::Topic,
            ExchangeKind::Fanout,
            ExchangeKind::Direct,
        ] {
            assert_eq!(k.to_string().parse::<ExchangeKind>(), Ok(k));
        }
        assert_eq!("Fanout".parse::<ExchangeKind>(), Ok(ExchangeKind::Fanout));
        assert!("headers".parse::<ExchangeKind>().is_err());
        assert_eq!(ExchangeKind::default(), ExchangeKind::Topic);
    }

    #[test]
    fn debug_never_shows_password() {
        let cfg = BusConfig {
            password: "hunter2".into(),
            url: Some("amqp://bob:s3cret@broker:5672/%2f".into()),
            ..BusConfig::default()
        };
        let text = format!("{cfg:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!cfg.endpoint().contains("s3cret"));
        assert_eq!(
            redact_url("amqp://bob:s3cret@broker:5672/%2f"),
            "amqp://bob:***@broker:5672/%2f"
        );
        assert_eq!(redact_url("amqp://broker"), "amqp://broker");
    }

    #[test]
    fn uri_from_fields_and_url() {
        let cfg = BusConfig {
            host: "h".into(),
            port: 1234,
            user: "u".into(),
            password: "p".into(),
            vhost: "v".into(),
            heartbeat: 7,
            ..BusConfig::default()
        };
        let uri = cfg.amqp_uri().expect("uri");
        assert_eq!(uri.authority.host, "h");
        assert_eq!(uri.authority.port, 1234);
        assert_eq!(uri.authority.userinfo.password, "p");
        assert_eq!(uri.vhost, "v");
        assert_eq!(uri.query.heartbeat, Some(7));

        let cfg = BusConfig {
            url: Some("amqp://a:b@c:99/%2f?heartbeat=3".into()),
            ..BusConfig::default()
        };
        let uri = cfg.amqp_uri().expect("uri");
        assert_eq!(uri.authority.host, "c");
        assert_eq!(uri.vhost, "/");
        assert_eq!(uri.query.heartbeat, Some(3));

        let bad = BusConfig {
            url: Some("nope://x:secret@y".into()),
            ..BusConfig::default()
        };
        let err = bad.amqp_uri().expect_err("bad url").to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
