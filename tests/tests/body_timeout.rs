//! Request bodies that never arrive, or trickle: the time to receive a body is bounded
//! (`--http-body-timeout`, `--http-body-idle-timeout`), answered 408 and the connection
//! closed. A binary of its own: its hosts run beside no file-descriptor exhaustion test.

use std::{io::Write, net::TcpStream, time::Duration};

use integration_tests::{read_until_closed, Host, PluginDir};

fn host_with(args: &[&str]) -> (Host, PluginDir) {
    let dir = PluginDir::new();
    let host = Host::builder(dir.path()).args(args).start();
    (host, dir)
}

/// A POST head to `_debug/publish` announcing `length` bytes of body.
fn post_head(host: &Host, length: usize) -> String {
    format!(
        "POST /{}/_debug/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n",
        host.name
    )
}

#[test]
fn a_body_that_never_arrives_is_answered_408_and_closed() {
    let (host, _dir) = host_with(&["--http-body-idle-timeout", "0.5"]);
    let mut stream = TcpStream::connect(("127.0.0.1", host.port)).unwrap();
    stream
        .write_all(post_head(&host, 100_000).as_bytes())
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(20))
        .expect("the server closes the connection, well before 20 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--http-body-idle-timeout"), "{answer}");
    assert!(answer.contains("access-control-allow-origin"), "{answer}");
    // The server goes on serving.
    assert_eq!(host.get("/_service/status").status(), 200);
}

#[test]
fn a_body_that_trickles_is_cut_at_the_total_limit() {
    let (host, _dir) = host_with(&["--http-body-timeout", "1", "--http-body-idle-timeout", "60"]);
    let mut stream = TcpStream::connect(("127.0.0.1", host.port)).unwrap();
    stream
        .write_all(post_head(&host, 100_000).as_bytes())
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    // One byte every 50 ms, each well within the idle limit; at most 400 of them (20 s).
    let trickle = std::thread::spawn(move || {
        for _ in 0..400 {
            if writer.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let answer = read_until_closed(&mut stream, Duration::from_secs(20))
        .expect("the server closes the connection, well before 20 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--http-body-timeout"), "{answer}");
    drop(stream);
    let _ = trickle.join();
}
