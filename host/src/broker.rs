//! The embedded MQTT broker (`--embedded-broker [HOST:PORT]`): rumqttd inside the host
//! process, so that a first run on a machine with nothing installed shows the whole message
//! flow (device-plugin → broker → history-plugin → the operator page). The host's own MQTT
//! client then connects to it like any other client, and so can other services and
//! `mosquitto_sub`.
//!
//! What it is: MQTT 3.1.1 (and 5) over plain TCP, QoS 0 and 1, retained messages, wills
//! (published when a client's connection drops without a DISCONNECT). What it is not: a
//! replacement for Mosquitto in a brewery. It keeps nothing across a restart (retained
//! messages included), has no users, passwords or TLS (hence loopback by default), and its
//! memory is bounded by the limits below rather than tuned; it lives and dies with the host
//! process (a reload keeps it running, a restart starts it empty).

use std::{
    collections::HashMap,
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Where `--embedded-broker` listens when given without a value.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:1883";
/// Largest message the broker accepts (the host's own default MQTT limit).
const MAX_PAYLOAD: usize = 16 << 20;
/// Clients connected at once.
const MAX_CONNECTIONS: usize = 1000;
/// Messages kept per subscription filter in memory: segments of 1 MiB, at most 10.
const SEGMENT_SIZE: usize = 1 << 20;
const SEGMENT_COUNT: usize = 10;
/// How long the broker may take to accept connections after its start.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

fn config(address: SocketAddr) -> Config {
    let server = ServerSettings {
        name: "embedded".to_owned(),
        listen: address,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            // Any filter a client asks for (otherwise only configured ones).
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: MAX_CONNECTIONS,
            max_outgoing_packet_count: 200,
            max_segment_size: SEGMENT_SIZE,
            max_segment_count: SEGMENT_COUNT,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("v4".to_owned(), server.clone())])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot run the embedded MQTT broker on {address}: {err}. Is another broker (e.g. \
         Mosquitto) listening there? Use it instead: leave out --embedded-broker and give \
         --mqtt-host/--mqtt-port; or choose another address: --embedded-broker HOST:PORT"
    )]
    Bind {
        address: SocketAddr,
        err: std::io::Error,
    },
    #[error("cannot start the embedded MQTT broker: {0}")]
    Thread(std::io::Error),
    #[error(
        "the embedded MQTT broker did not accept connections on {address} within {} s",
        READY_TIMEOUT.as_secs()
    )]
    NotReady { address: SocketAddr },
}

/// Starts the broker on `address` and waits (at most 5 s) until it accepts connections.
/// A port already taken (say, by the machine's Mosquitto) is an error that says so.
pub fn start(address: SocketAddr) -> Result<(), BrokerError> {
    // rumqttd only logs a failed bind, from its own thread: try it here first, for an error
    // the operator sees.
    drop(TcpListener::bind(address).map_err(|err| BrokerError::Bind { address, err })?);
    let mut broker = Broker::new(config(address));
    std::thread::Builder::new()
        .name("embedded-broker".to_owned())
        .spawn(move || {
            if let Err(err) = broker.start() {
                tracing::error!("The embedded MQTT broker stopped: {err}");
            }
        })
        .map_err(BrokerError::Thread)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let target = match address.ip().is_unspecified() {
        true => SocketAddr::from(([127, 0, 0, 1], address.port())),
        false => address,
    };
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
            tracing::info!("Embedded MQTT broker listening on mqtt://{address}");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotReady { address })
}
