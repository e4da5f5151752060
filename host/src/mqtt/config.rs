//! MQTT settings: the broker's address by protocol, credentials, keepalive, client id, TLS
//! verification, and the host's own bounds.

use std::{fmt, str::FromStr, time::Duration};

use crate::broker_list::Address;

/// How the client reaches the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Plain TCP (default port 1883).
    Mqtt,
    /// TLS (8883).
    Mqtts,
    /// Websocket (80).
    Ws,
    /// Websocket over TLS (443).
    Wss,
}

impl Protocol {
    /// The port used when `--mqtt-port` is not given.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Mqtt => 1883,
            Protocol::Mqtts => 8883,
            Protocol::Ws => 80,
            Protocol::Wss => 443,
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Protocol::Mqtts | Protocol::Wss)
    }

    pub fn is_websocket(self) -> bool {
        matches!(self, Protocol::Ws | Protocol::Wss)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Mqtt => "mqtt",
            Protocol::Mqtts => "mqtts",
            Protocol::Ws => "ws",
            Protocol::Wss => "wss",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--mqtt-protocol` that is none of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MQTT protocol '{}': one of mqtt, mqtts, ws, wss", .0.escape_debug())]
pub struct ParseProtocolError(String);

impl FromStr for Protocol {
    type Err = ParseProtocolError;

    fn from_str(text: &str) -> Result<Self, ParseProtocolError> {
        match text {
            "mqtt" => Ok(Protocol::Mqtt),
            "mqtts" => Ok(Protocol::Mqtts),
            "ws" => Ok(Protocol::Ws),
            "wss" => Ok(Protocol::Wss),
            _ => Err(ParseProtocolError(text.to_owned())),
        }
    }
}

/// A message the broker publishes for the service when its connection dies, and the host
/// publishes itself at a clean stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// Everything the MQTT client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    pub protocol: Protocol,
    /// One broker, or several comma-separated `host[:port]` entries tried in turn (see
    /// [`crate::broker_list`]).
    pub host: String,
    /// The port of an entry without one; `None`: the protocol's default port.
    pub port: Option<u16>,
    /// The websocket path.
    pub path: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub keepalive: Duration,
    /// `None`: a random one (`brewblox-host-<name>-<random>`), so that two instances of a
    /// service never take each other's connection.
    pub client_id: Option<String>,
    pub tls_verify: bool,
    /// Longest pause between connection attempts; the first after a loss is made at once.
    pub reconnect_interval: Duration,
    /// Bound on a publish, a subscription's wait for its acknowledgement and the connect.
    pub timeout: Duration,
    /// Largest payload published or handed to a plugin, in bytes.
    pub max_message_size: usize,
    /// Messages a subscription holds while its handler is busy; more are dropped.
    pub queue_size: usize,
    /// The service name, for the client id.
    pub service: String,
}

/// The default largest payload: 16 MiB.
pub const DEFAULT_MQTT_MAX_MESSAGE_SIZE: usize = 16 << 20;
/// The default number of messages a subscription holds.
pub const DEFAULT_MQTT_QUEUE_SIZE: usize = 1000;

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            protocol: Protocol::Mqtt,
            host: "eventbus".into(),
            port: None,
            path: "/eventbus".into(),
            user: None,
            password: None,
            keepalive: Duration::from_secs(60),
            client_id: None,
            tls_verify: false,
            reconnect_interval: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            max_message_size: DEFAULT_MQTT_MAX_MESSAGE_SIZE,
            queue_size: DEFAULT_MQTT_QUEUE_SIZE,
            service: "_service".into(),
        }
    }
}

impl MqttConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.protocol.default_port())
    }

    /// The brokers of `host`, in the order they are tried. A list that does not parse (the
    /// CLI refuses one) is taken as one host, which then fails to connect with a reason.
    pub fn addresses(&self) -> Vec<Address> {
        crate::broker_list::parse_addresses(&self.host).unwrap_or_else(|_| {
            vec![Address {
                host: self.host.clone(),
                port: None,
            }]
        })
    }

    /// The URL of the websocket at `address` (ws, wss).
    pub(crate) fn websocket_url(&self, address: &Address) -> String {
        format!(
            "{}://{}{}",
            self.protocol,
            address.authority(self.port()),
            self.path
        )
    }

    /// One broker's address as shown in logs, health and metrics (never with a password).
    pub fn endpoint_of(&self, address: &Address) -> String {
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{}@", u.escape_debug()))
            .unwrap_or_default();
        let path = if self.protocol.is_websocket() {
            self.path.as_str()
        } else {
            ""
        };
        format!(
            "{}://{user}{}{path}",
            self.protocol,
            address.authority(self.port())
        )
    }

    /// Every broker of the list as [`endpoint_of`](Self::endpoint_of) shows it.
    pub fn endpoints(&self) -> Vec<String> {
        self.addresses()
            .iter()
            .map(|address| self.endpoint_of(address))
            .collect()
    }

    /// The brokers' addresses as shown in logs (never with a password).
    pub fn endpoint(&self) -> String {
        self.endpoints().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_default_by_protocol() {
        for (text, port) in [("mqtt", 1883), ("mqtts", 8883), ("ws", 80), ("wss", 443)] {
            let cfg = MqttConfig {
                protocol: text.parse().unwrap(),
                ..MqttConfig::default()
            };
            assert_eq!(cfg.port(), port, "{text}");
        }
        assert!("tcp".parse::<Protocol>().is_err());
        let cfg = MqttConfig {
            protocol: Protocol::Wss,
            user: Some("u".into()),
            password: Some("secret".into()),
            port: Some(1),
            ..MqttConfig::default()
        };
        assert_eq!(cfg.endpoint(), "wss://u@eventbus:1/eventbus");
        let cfg = MqttConfig {
            host: "a,b:1884,[::1]".into(),
            ..MqttConfig::default()
        };
        assert_eq!(
            cfg.endpoints(),
            ["mqtt://a:1883", "mqtt://b:1884", "mqtt://[::1]:1883"]
        );
        assert_eq!(cfg.addresses()[1].port, Some(1884));
    }
}
