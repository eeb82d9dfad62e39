//! These tests run the real nats-server; install it first with
//! `scripts/install-nats-server` (or set NATS_SERVER_BIN).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nats_trace_testing::{NatsServer, ServerError};

fn start() -> NatsServer {
    NatsServer::start().unwrap_or_else(|err| panic!("{err}"))
}

fn connect(server: &NatsServer) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    BufReader::new(stream)
}

fn read_line(conn: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    conn.read_line(&mut line).unwrap();
    line
}

fn info(server: &NatsServer) -> String {
    let line = read_line(&mut connect(server));
    assert!(line.starts_with("INFO {"), "unexpected greeting {line:?}");
    line
}

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A minimal NATS request/reply over the raw protocol, enough to drive the
/// JetStream API without a client library.
fn request(server: &NatsServer, subject: &str, payload: &str) -> String {
    let mut conn = connect(server);
    read_line(&mut conn); // INFO
    let msg = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB _INBOX.test 1\r\n\
         PUB {subject} _INBOX.test {}\r\n{payload}\r\n",
        payload.len()
    );
    conn.get_mut().write_all(msg.as_bytes()).unwrap();
    loop {
        let line = read_line(&mut conn);
        assert!(!line.starts_with("-ERR"), "{line}\n{}", server.log());
        if let Some(header) = line.strip_prefix("MSG ") {
            let len: usize = header.split_whitespace().last().unwrap().parse().unwrap();
            let mut body = vec![0; len + 2];
            conn.read_exact(&mut body).unwrap();
            body.truncate(len);
            return String::from_utf8(body).unwrap();
        }
    }
}

#[test]
fn start_greets_with_jetstream_info() {
    let mut server = start();
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    assert!(server.pid().is_some());
    assert!(server.is_running());
    let info = info(&server);
    assert!(info.contains("\"jetstream\":true"), "{info}");
    assert!(info.contains("\"host\":\"127.0.0.1\""), "{info}");
}

#[test]
fn several_servers_at_once() {
    let servers: Vec<NatsServer> = (0..3).map(|_| start()).collect();
    let mut ports: Vec<u16> = servers.iter().map(NatsServer::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for server in &servers {
        assert!(info(server).contains(&format!("\"port\":{}", server.port())));
    }
}

#[test]
fn kill_then_start_again_keeps_port_and_store() {
    let mut server = start();
    let port = server.port();
    let created = request(
        &server,
        "$JS.API.STREAM.CREATE.PERSIST",
        r#"{"name":"PERSIST","subjects":["persist.>"],"storage":"file"}"#,
    );
    assert!(!created.contains("\"error\""), "{created}");
    // An open client at kill time leaves the server's side of the
    // connection in TIME_WAIT; rebinding must still work.
    let held = connect(&server);

    server.kill();
    server.kill();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    assert!(!accepts_connections(port));
    drop(held);

    server.start_again().unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(server.port(), port);
    assert!(server.is_running());
    assert!(server.store_dir().join("jetstream").is_dir());
    let stream_info = request(&server, "$JS.API.STREAM.INFO.PERSIST", "");
    assert!(
        stream_info.contains("\"name\":\"PERSIST\""),
        "{stream_info}"
    );
    assert!(!stream_info.contains("\"error\""), "{stream_info}");
}

#[test]
fn start_again_while_running_is_an_error() {
    let mut server = start();
    let err = server.start_again().unwrap_err();
    assert!(err.to_string().contains("still running"), "{err}");
    assert!(server.is_running());
}

#[test]
fn stop_is_graceful() {
    let mut server = start();
    let began = Instant::now();
    server.stop().unwrap();
    assert!(began.elapsed() < Duration::from_secs(5));
    assert!(!server.is_running());
    let log = server.log();
    assert!(log.contains("Trapped \"terminated\" signal"), "{log}");
    assert!(log.contains("Server Exiting"), "{log}");
    server.stop().unwrap();
}

#[test]
fn restart_comes_back_on_same_port() {
    let mut server = start();
    let port = server.port();
    let old_pid = server.pid();
    server.restart().unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), old_pid);
    assert!(info(&server).contains(&format!("\"port\":{port}")));

    server.kill();
    server.restart().unwrap_or_else(|err| panic!("{err}"));
    assert!(server.is_running());
}

#[test]
fn drop_kills_the_server_even_on_panic() {
    let server = start();
    let port = server.port();
    drop(server);
    assert!(!accepts_connections(port));

    let (tx, rx) = std::sync::mpsc::channel();
    let panicked = std::thread::spawn(move || {
        let server = start();
        tx.send(server.port()).unwrap();
        panic!("test failure while the server runs");
    })
    .join();
    assert!(panicked.is_err());
    assert!(!accepts_connections(rx.recv().unwrap()));
}

#[test]
fn builder_options_reach_the_server() {
    let store = tempfile::TempDir::new().unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let server = NatsServer::builder()
        .port(port)
        .store_dir(store.path())
        .config_file("server_name: trace-test\n")
        .arg("--auth")
        .arg("s3cret")
        .start()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(server.port(), port);
    assert_eq!(server.store_dir(), store.path());
    let info = info(&server);
    assert!(info.contains("\"server_name\":\"trace-test\""), "{info}");
    assert!(info.contains("\"auth_required\":true"), "{info}");
    drop(server);
    // A caller-supplied store dir outlives the server.
    assert!(store.path().join("jetstream").is_dir());
}

#[test]
fn jetstream_can_be_disabled() {
    let server = NatsServer::builder()
        .jetstream(false)
        .start()
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(!info(&server).contains("\"jetstream\":true"));
}

#[test]
fn bad_arguments_report_not_ready_with_log() {
    let err = NatsServer::builder()
        .arg("--no-such-flag")
        .start()
        .unwrap_err();
    let ServerError::NotReady { log, .. } = &err else {
        panic!("expected NotReady, got {err:?}");
    };
    assert!(log.contains("no-such-flag"), "{log}");
    assert!(err.to_string().contains("exited early"), "{err}");
}

#[test]
fn missing_binary_override_is_a_spawn_error() {
    let err = NatsServer::builder()
        .binary("/nonexistent/nats-server")
        .start()
        .unwrap_err();
    assert!(matches!(err, ServerError::Spawn { .. }), "{err:?}");
    assert!(
        err.to_string().contains("scripts/install-nats-server"),
        "{err}"
    );
}

#[test]
fn taken_fixed_port_is_not_ready() {
    let first = start();
    let err = NatsServer::builder()
        .port(first.port())
        .start()
        .unwrap_err();
    let ServerError::NotReady { log, .. } = &err else {
        panic!("expected NotReady, got {err:?}");
    };
    assert!(log.contains("address already in use"), "{log}");
}
