//! Bus settings and the exchange type.
//!
//! Kept apart from the connection code so the CLI layer can build a [`BusConfig`] without
//! touching lapin, and so the password-redacting `Debug` lives next to the field it protects.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use serde::Serialize;

use percent_encoding::percent_decode_str;
use url::{Host, Url};

use super::error::BusError;
use super::names::check_short_string;

fn decode(text: &str) -> Result<std::borrow::Cow<'_, str>, std::str::Utf8Error> {
    percent_decode_str(text).decode_utf8()
}

/// The AMQP exchange types brewblox-service 0.20.0 accepts (`exchange_type` string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, schemars::JsonSchema)]
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

/// Error for an exchange type other than topic, fanout or direct (the words are plugin-abi's,
/// which the SDK's test host gives too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseExchangeKindError(pub String);

impl FromStr for ExchangeKind {
    type Err = ParseExchangeKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const KINDS: [ExchangeKind; 3] = [
            ExchangeKind::Topic,
            ExchangeKind::Fanout,
            ExchangeKind::Direct,
        ];
        match plugin_abi::amqp::exchange_type(s) {
            Ok(index) => Ok(KINDS[index]),
            Err(err) => Err(ParseExchangeKindError(err.message.into_string())),
        }
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
    /// One broker, or several comma-separated `host[:port]` entries tried in turn (see
    /// [`crate::broker_list`]); `port` is the port of an entry without one.
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Never logged: `Debug` prints `***`.
    pub password: String,
    pub vhost: String,
    /// `amqp://user:pass@host:port/vhost`, or several comma-separated, tried in turn; when
    /// set it replaces host/port/user/password/vhost.
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
            .field("url", &self.url.as_ref().map(|_| self.endpoints()))
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
    /// Checks what can be checked before connecting: every URL of the list parses, every
    /// `host[:port]` entry is valid, the vhost fits in an AMQP short string. For a CLI to
    /// refuse bad settings at start; the error never holds a password.
    pub fn validate(&self) -> Result<(), BusError> {
        self.amqp_uris().map(|_| ())
    }

    /// The connection targets, in the order they are tried: one per URL of `url`, or else
    /// one per `host[:port]` entry of `host` (port defaulting to `port`). Each has our
    /// heartbeat and frame size unless its URL names its own.
    pub(crate) fn amqp_uris(&self) -> Result<Vec<AMQPUri>, BusError> {
        let invalid = |err: crate::broker_list::ListError| {
            BusError::InvalidConfig(format!("invalid eventbus list: {err}"))
        };
        let mut uris = match &self.url {
            Some(list) => crate::broker_list::split_list(list)
                .map_err(invalid)?
                .into_iter()
                .map(parse_eventbus_url)
                .collect::<Result<Vec<_>, _>>()?,
            None => {
                check_short_string("vhost", &self.vhost)
                    .map_err(|err| BusError::InvalidConfig(err.to_string()))?;
                crate::broker_list::parse_addresses(&self.host)
                    .map_err(invalid)?
                    .into_iter()
                    .map(|address| self.uri_for(address))
                    .collect()
            }
        };
        for uri in &mut uris {
            if uri.query.heartbeat.is_none() {
                uri.query.heartbeat = Some(self.heartbeat);
            }
            if uri.query.frame_max.is_none() {
                uri.query.frame_max = Some(FRAME_MAX);
            }
        }
        Ok(uris)
    }

    /// The target for one `--eventbus-host` entry, with the other eventbus options.
    fn uri_for(&self, address: crate::broker_list::Address) -> AMQPUri {
        AMQPUri {
            scheme: AMQPScheme::AMQP,
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: self.user.clone(),
                    password: self.password.clone(),
                },
                port: address.port.unwrap_or(self.port),
                host: address.host,
            },
            vhost: self.vhost.clone(),
            query: AMQPQueryString::default(),
        }
    }

    /// Each broker of the list as logs, health and metrics show it: no password. Same
    /// order and length as the connection targets when the settings are valid.
    pub fn endpoints(&self) -> Vec<String> {
        match &self.url {
            Some(list) => list.split(',').map(|url| redact_url(url.trim())).collect(),
            None => {
                let vhost = self.vhost.replace('/', "%2f");
                self.host
                    .split(',')
                    .map(|entry| {
                        let entry = entry.trim();
                        let authority = match crate::broker_list::parse_address(entry) {
                            Ok(address) => address.authority(self.port),
                            Err(_) => entry.to_owned(),
                        };
                        format!("amqp://{}@{authority}/{vhost}", self.user)
                    })
                    .collect()
            }
        }
    }

    /// Where we connect, for logs: every broker of the list, no password.
    pub fn endpoint(&self) -> String {
        self.endpoints().join(", ")
    }

    /// `text` with the password (as given, and as written in the URL) replaced by `***`: for
    /// error texts of the AMQP library, which may quote what it was given.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut secrets = vec![self.password.clone()];
        let urls = self.url.as_deref().unwrap_or_default().split(',');
        for url in urls.filter_map(|u| Url::parse(u.trim()).ok()) {
            secrets.extend(url.password().map(str::to_owned));
            secrets.extend(
                url.password()
                    .and_then(|p| Some(decode(p).ok()?.into_owned())),
            );
        }
        let mut text = text.to_owned();
        // A one- or two-letter password would blank out ordinary words; it is no secret anyway.
        for secret in secrets.iter().filter(|s| s.len() > 2) {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }
}

/// What `--eventbus-url` must look like, for error messages.
const URL_FORM: &str = "expected amqp[s]://user:password@host:port/vhost, with any of \
    @ : / ? # % , in the user name or password percent-encoded (/ as %2F, @ as %40, \
    , as %2C)";

/// Parses `--eventbus-url` (`amqp[s]://user:password@host:port/vhost?heartbeat=…`), with
/// percent-escapes in the user name, password and vhost decoded. The error never holds the
/// password: a CLI can print it and refuse to start.
pub fn parse_eventbus_url(text: &str) -> Result<AMQPUri, BusError> {
    let invalid = |why: &str| {
        BusError::InvalidConfig(format!("invalid eventbus URL {}: {why}", redact_url(text)))
    };
    let url = Url::parse(text).map_err(|err| invalid(&format!("{err}; {URL_FORM}")))?;
    let scheme = match url.scheme() {
        "amqp" => AMQPScheme::AMQP,
        "amqps" => AMQPScheme::AMQPS,
        other => return Err(invalid(&format!("scheme {other:?} is not amqp or amqps"))),
    };
    if url.fragment().is_some() {
        return Err(invalid(&format!("it has a '#' fragment; {URL_FORM}")));
    }
    let host = match url.host() {
        Some(Host::Domain(name)) => decoded(name).ok_or_else(|| invalid(NOT_UTF8))?,
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(invalid(&format!("no host; {URL_FORM}"))),
    };
    if host.is_empty() {
        return Err(invalid(&format!("no host; {URL_FORM}")));
    }
    let defaults = AMQPUri::default();
    let username = match url.username() {
        "" => defaults.authority.userinfo.username,
        name => decoded(name).ok_or_else(|| invalid(NOT_UTF8))?,
    };
    let password = match url.password() {
        None => defaults.authority.userinfo.password,
        Some(password) => decoded(password).ok_or_else(|| invalid(NOT_UTF8))?,
    };
    let vhost = match url.path().strip_prefix('/') {
        None => "/".to_owned(),
        Some(path) => decoded(path).ok_or_else(|| invalid(NOT_UTF8))?,
    };
    check_short_string("vhost", &vhost).map_err(|err| invalid(&err.to_string()))?;
    // The query options, parsed by the AMQP library from a URL with nothing secret in it.
    let query = match url.query() {
        None => AMQPQueryString::default(),
        Some(query) => {
            format!("amqp://host/?{query}")
                .parse::<AMQPUri>()
                .map_err(|err| invalid(&format!("bad query: {err}")))?
                .query
        }
    };
    let port = url.port().unwrap_or_else(|| scheme.default_port());
    if port == 0 {
        return Err(invalid("port 0; a port is 1 to 65535"));
    }
    Ok(AMQPUri {
        scheme,
        authority: AMQPAuthority {
            userinfo: AMQPUserInfo { username, password },
            host,
            port,
        },
        vhost,
        query,
    })
}

/// `text` with its percent-escapes decoded; `None` when they are not UTF-8.
fn decoded(text: &str) -> Option<String> {
    decode(text).ok().map(|text| text.into_owned())
}

/// Why a part of the URL does not decode.
const NOT_UTF8: &str = "a percent-escape that is not UTF-8";

/// `url` with its password replaced by `***`, for logs, health and errors. A URL that does
/// not parse shows only its scheme and what follows its last `@`: where the password ends
/// cannot be known, so everything that could be one is hidden.
pub(crate) fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = Url::parse(url) {
        if parsed.password().is_some() && parsed.set_password(Some("***")).is_ok() {
            return parsed.to_string();
        }
        if parsed.fragment().is_none() && parsed.password().is_none() {
            return url.to_owned();
        }
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_owned();
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => format!("{scheme}://***"),
    }
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

    fn first_uri(cfg: &BusConfig) -> AMQPUri {
        cfg.amqp_uris().expect("uri").remove(0)
    }

    #[test]
    fn lists_of_urls_and_hosts() {
        let cfg = BusConfig {
            url: Some("amqp://a:s3cret@n1:5701/%2f, amqps://b:p%2Cw@n2/v".into()),
            ..BusConfig::default()
        };
        let uris = cfg.amqp_uris().expect("two urls");
        assert_eq!(uris.len(), 2);
        assert_eq!(
            (uris[0].authority.host.as_str(), uris[0].authority.port),
            ("n1", 5701)
        );
        assert_eq!(
            (uris[1].authority.host.as_str(), uris[1].authority.port),
            ("n2", 5671)
        );
        assert_eq!(uris[1].authority.userinfo.password, "p,w");
        assert_eq!(uris[1].query.heartbeat, Some(cfg.heartbeat));
        assert_eq!(
            cfg.endpoints(),
            ["amqp://a:***@n1:5701/%2f", "amqps://b:***@n2/v"]
        );
        assert_eq!(cfg.scrub("s3cret p,w"), "*** ***");

        let cfg = BusConfig {
            host: "n1,n2:5702,[::1]".into(),
            port: 5700,
            ..BusConfig::default()
        };
        let ports: Vec<_> = cfg
            .amqp_uris()
            .expect("three hosts")
            .into_iter()
            .map(|u| (u.authority.host, u.authority.port))
            .collect();
        assert_eq!(
            ports,
            [
                ("n1".into(), 5700),
                ("n2".into(), 5702),
                ("::1".into(), 5700)
            ]
        );
        assert_eq!(
            cfg.endpoints(),
            [
                "amqp://guest@n1:5700/%2f",
                "amqp://guest@n2:5702/%2f",
                "amqp://guest@[::1]:5700/%2f"
            ]
        );
        for (host, url) in [("n1,", None), ("n1:0", None), ("a b", None)] {
            let cfg = BusConfig {
                host: host.into(),
                url,
                ..BusConfig::default()
            };
            assert!(cfg.validate().is_err(), "{host}");
        }
        let cfg = BusConfig {
            url: Some("amqp://u:s3cret@n1/,amqp://u:s3cret@n2:0/".into()),
            ..BusConfig::default()
        };
        let err = cfg.validate().expect_err("port 0").to_string();
        assert!(err.contains("port 0") && !err.contains("s3cret"), "{err}");
    }

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
        // Every URL of a list is redacted, not only the first.
        let cfg = BusConfig {
            url: Some("amqp://bob:s3cret@n1/%2f,amqp://eve:t0psecret@n2/%2f".into()),
            ..BusConfig::default()
        };
        let text = format!("{cfg:?} {}", cfg.endpoint());
        assert!(
            !text.contains("s3cret") && !text.contains("t0psecret"),
            "{text}"
        );
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
        let uri = first_uri(&cfg);
        assert_eq!(uri.authority.host, "h");
        assert_eq!(uri.authority.port, 1234);
        assert_eq!(uri.authority.userinfo.password, "p");
        assert_eq!(uri.vhost, "v");
        assert_eq!(uri.query.heartbeat, Some(7));

        let cfg = BusConfig {
            url: Some("amqp://a:b@c:99/%2f?heartbeat=3".into()),
            ..BusConfig::default()
        };
        let uri = first_uri(&cfg);
        assert_eq!(uri.authority.host, "c");
        assert_eq!(uri.vhost, "/");
        assert_eq!(uri.query.heartbeat, Some(3));

        let bad = BusConfig {
            url: Some("nope://x:secret@y".into()),
            ..BusConfig::default()
        };
        let err = bad.amqp_uris().expect_err("bad url").to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    const SECRET_PARTS: [&str; 5] = ["@", ":", "/", "?", "#"];

    /// Every form of a password holding `c`, raw and percent-encoded.
    fn passwords() -> Vec<(String, String)> {
        SECRET_PARTS
            .iter()
            .map(|c| {
                let raw = format!("S3cr{c}etX");
                let encoded = raw.replace(c, &format!("%{:02X}", c.as_bytes()[0]));
                (raw, encoded)
            })
            .collect()
    }

    #[test]
    fn percent_encoded_passwords_parse_and_never_show() {
        for (raw, encoded) in passwords() {
            let url = format!("amqp://guest:{encoded}@127.0.0.1:5672/%2f");
            let uri = parse_eventbus_url(&url).expect(&url);
            assert_eq!(uri.authority.userinfo.password, raw);
            assert_eq!(uri.authority.host, "127.0.0.1", "an IP address is kept");
            assert_eq!(uri.vhost, "/");
            let shown = redact_url(&url);
            assert_eq!(shown, "amqp://guest:***@127.0.0.1:5672/%2f");
            let cfg = BusConfig {
                url: Some(url.clone()),
                ..BusConfig::default()
            };
            let debug = format!("{cfg:?} {}", cfg.endpoint());
            assert!(!debug.contains("S3cr"), "{debug}");
            assert_eq!(
                cfg.scrub(&format!("login {raw} / {encoded}")),
                "login *** / ***"
            );
        }
    }

    #[test]
    fn unencoded_passwords_are_refused_or_hidden() {
        for (raw, _) in passwords() {
            let url = format!("amqp://guest:{raw}@127.0.0.1:5672/%2f");
            let shown = redact_url(&url);
            assert!(!shown.contains("S3cr"), "{url} shown as {shown}");
            match parse_eventbus_url(&url) {
                // '@' and ':' are unambiguous: the last '@' ends the password.
                Ok(uri) => assert_eq!(uri.authority.userinfo.password, raw, "{url}"),
                Err(err) => {
                    let text = err.to_string();
                    assert!(!text.contains("S3cr"), "{text}");
                    assert!(!text.contains("etX"), "{text}");
                    assert!(text.contains("percent-encoded"), "{text}");
                }
            }
        }
        // The case that was reported: a '/' in the password.
        assert!(parse_eventbus_url("amqp://guest:S3cr/etX@127.0.0.1:5672/%2f").is_err());
    }

    #[test]
    fn malformed_urls_are_refused_with_a_reason() {
        for url in [
            "nope://x:secret@y",
            "amqp://",
            "amqp:relative",
            "not a url",
            "amqp://u:secret@host:99999/",
            "amqp://u:secret@host/?heartbeat=soon",
        ] {
            let err = parse_eventbus_url(url).expect_err(url).to_string();
            assert!(!err.contains("secret"), "{err}");
        }
        let long_vhost = format!("amqp://h/{}", "v".repeat(256));
        assert!(parse_eventbus_url(&long_vhost).is_err());
        let fields = BusConfig {
            vhost: "v".repeat(256),
            ..BusConfig::default()
        };
        assert!(fields.validate().is_err());
        assert!(BusConfig::default().validate().is_ok());
    }

    #[test]
    fn defaults_and_options() {
        let uri = parse_eventbus_url("amqp://broker").expect("minimal");
        assert_eq!(uri.authority.host, "broker");
        assert_eq!(uri.authority.port, 5672);
        assert_eq!(uri.authority.userinfo.username, "guest");
        assert_eq!(uri.vhost, "/");
        let uri = parse_eventbus_url("amqps://u:p@[::1]:5671/prod?heartbeat=3&frame_max=8192")
            .expect("full");
        assert_eq!(uri.authority.host, "::1");
        assert_eq!(uri.authority.port, 5671);
        assert_eq!(uri.vhost, "prod");
        assert_eq!(uri.query.heartbeat, Some(3));
        assert_eq!(uri.query.frame_max, Some(8192));
        assert_eq!(redact_url("amqp://broker"), "amqp://broker");
        assert_eq!(redact_url("nonsense"), "<not a URL>");
    }
}
