//! The MQTT client against fake brokers on loopback that misbehave on purpose: one that
//! accepts a connection and closes it at once, one that sends a packet far over the limit.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use brewblox_host::metrics::bus::BusMetrics;
use brewblox_host::mqtt::{MqttBus, MqttConfig};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

fn config(port: u16) -> MqttConfig {
    MqttConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        keepalive: Duration::from_secs(5),
        reconnect_interval: Duration::from_secs(2),
        timeout: Duration::from_secs(3),
        max_message_size: 1000,
        service: "mqtt-hostile".into(),
        ..MqttConfig::default()
    }
}

/// CONNACK: session not present, accepted.
const CONNACK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

/// Reads the client's CONNECT (its fixed header and remaining length), bounded in time.
async fn read_connect(socket: &mut TcpStream) -> bool {
    let read = async {
        let mut first = [0u8; 1];
        socket.read_exact(&mut first).await.ok()?;
        let (mut len, mut shift) = (0usize, 0);
        for _ in 0..4 {
            let mut byte = [0u8; 1];
            socket.read_exact(&mut byte).await.ok()?;
            len |= usize::from(byte[0] & 0x7f) << shift;
            shift += 7;
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len.min(4096)];
        socket.read_exact(&mut body).await.ok()?;
        Some(first[0] == 0x10)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), read).await,
        Ok(Some(true))
    )
}

/// A broker that accepts every connection, answers CONNACK and closes it: each connection
/// counted.
async fn accept_and_close(listener: TcpListener, count: Arc<AtomicUsize>) {
    while let Ok((mut socket, _)) = listener.accept().await {
        count.fetch_add(1, Ordering::SeqCst);
        if read_connect(&mut socket).await {
            let _ = socket.write_all(&CONNACK).await;
        }
        drop(socket);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_closes_every_connection_is_not_hammered() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let broker = tokio::spawn(accept_and_close(listener, count.clone()));
    let bus = MqttBus::new(config(port), BusMetrics::detached()).unwrap();
    bus.start();
    // A window of 4 s: the pause doubles from 50 ms to 2 s (less a quarter at most), so
    // about 8 connections fit; a pause reset at every CONNACK made hundreds.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let made = count.load(Ordering::SeqCst);
    bus.shutdown(Duration::from_secs(1)).await;
    broker.abort();
    assert!((2..=15).contains(&made), "{made} connections in 4 s");
    assert!(bus.health().connection.reconnects >= 1);
}

/// A broker that answers CONNACK, then sends the head of a PUBLISH of 64 MiB and a few bytes
/// of it; returns how many bytes of its body it managed to write before the client closed,
/// and the listener (still open, so that the next attempt waits rather than fails).
async fn oversized_publish(listener: TcpListener) -> Option<(usize, TcpListener)> {
    let (mut socket, _) = listener.accept().await.ok()?;
    if !read_connect(&mut socket).await {
        return None;
    }
    socket.write_all(&CONNACK).await.ok()?;
    // PUBLISH QoS 0, remaining length 64 MiB (varint 0x80 0x80 0x80 0x20).
    socket
        .write_all(&[0x30, 0x80, 0x80, 0x80, 0x20])
        .await
        .ok()?;
    socket.write_all(&[0x00, 0x01, b't']).await.ok()?;
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 0;
    // Bounded: at most the 64 MiB announced; the client closes long before.
    while written < 64 << 20 {
        let wrote = tokio::time::timeout(Duration::from_secs(5), socket.write_all(&chunk)).await;
        match wrote {
            Ok(Ok(())) => written += chunk.len(),
            _ => break,
        }
    }
    Some((written, listener))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_far_over_the_message_limit_ends_the_connection_unread() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let broker = tokio::spawn(oversized_publish(listener));
    let bus = MqttBus::new(config(port), BusMetrics::detached()).unwrap();
    bus.start();
    let (written, _listener) = tokio::time::timeout(Duration::from_secs(20), broker)
        .await
        .expect("the client closes within 20 s")
        .unwrap()
        .expect("the fake broker got a CONNECT");
    // The client drops the socket just before its connection loop records why: wait
    // (bounded) for the record.
    let mut error = String::new();
    for _ in 0..500 {
        error = bus.health().connection.last_error.unwrap_or_default();
        if !error.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bus.shutdown(Duration::from_secs(1)).await;
    // The socket buffers hold a few MiB at most; the 64 MiB were never taken.
    assert!(written < 16 << 20, "{written} bytes taken");
    assert!(error.contains("larger than"), "{error}");
}
