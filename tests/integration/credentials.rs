//! Authenticated and TLS connections: they work, and no secret reaches a
//! span or a log line.

use std::time::Duration;

use nats_trace_runtime::prelude::*;
use nats_trace_runtime::{ConnectRetry, Credentials, Error};
use nats_trace_testing::{NatsServer, SpanCapture};
use tracing_subscriber::layer::SubscriberExt as _;

use crate::support::{self, Buffer, all_attribute_values};

mod guarded {
    use super::*;

    #[nats_subscriber(subject = "guarded.echo")]
    async fn echo(body: String) -> String {
        body
    }
}

const PREFIX: &str = "integration::credentials::guarded::";

fn log_into(buffer: &Buffer) -> tracing::subscriber::DefaultGuard {
    let writer = buffer.clone();
    tracing::subscriber::set_default(
        tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        ),
    )
}

async fn echo(client: &async_nats::Client) -> bytes::Bytes {
    client
        .request("guarded.echo", "secret-free".into())
        .await
        .expect("the handler answers")
        .payload
}

#[tokio::test]
async fn a_token_protected_server_is_used_without_leaking_the_token() {
    const TOKEN: &str = "t0ken-that-must-never-leak";
    let server = NatsServer::builder()
        .arg("--auth")
        .arg(TOKEN)
        .start()
        .expect("server with a token");
    let logs = Buffer::default();
    let _logging = log_into(&logs);
    let capture = SpanCapture::new();

    let refused = support::builder(&server, &capture, PREFIX)
        .connect_retry(ConnectRetry {
            max_attempts: Some(5),
            ..ConnectRetry::default()
        })
        .start()
        .await
        .expect_err("no token, no connection");
    let Error::Connect { attempts, .. } = &refused else {
        panic!("unexpected error: {refused}");
    };
    assert_eq!(*attempts, 1, "an authorization failure is not retried");

    let from_builder = support::builder(&server, &capture, PREFIX)
        .credentials(Credentials {
            token: Some(TOKEN.into()),
            ..Credentials::default()
        })
        .logging(false)
        .start()
        .await
        .expect("connects with the token");
    let client = async_nats::ConnectOptions::with_token(TOKEN.into())
        .connect(server.url())
        .await
        .expect("test client");
    assert_eq!(echo(&client).await, "secret-free");
    from_builder.stop().await.expect("clean stop");

    let in_url = format!("nats://{TOKEN}@127.0.0.1:{}", server.port());
    let from_url = support::builder(&server, &capture, PREFIX)
        .url(in_url)
        .start()
        .await
        .expect("connects with the token in the URL");
    assert_eq!(echo(&client).await, "secret-free");
    from_url.stop().await.expect("clean stop");

    let spans = capture.spans();
    assert!(!spans.is_empty());
    assert!(!all_attribute_values(&spans).contains(TOKEN));
    let logs = logs.text();
    assert!(
        logs.contains("connected to NATS"),
        "the runtime logged: {logs}"
    );
    assert!(!logs.contains(TOKEN), "{logs}");
    assert!(!format!("{refused:?} {refused}").contains(TOKEN));
}

#[tokio::test]
async fn a_tls_server_is_trusted_through_a_ca_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "nats-trace test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server_cert =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params")
            .signed_by(&server_key, &ca)
            .expect("server certificate");
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    };
    let ca_path = write("ca.pem", ca.pem());
    let cert_path = write("server.pem", server_cert.pem());
    let key_pem = server_key.serialize_pem();
    let key_path = write("server-key.pem", key_pem.clone());

    let server = NatsServer::builder()
        .arg("--tls")
        .arg("--tlscert")
        .arg(&cert_path)
        .arg("--tlskey")
        .arg(&key_path)
        .start()
        .expect("TLS server");
    let url = format!("tls://localhost:{}", server.port());
    let logs = Buffer::default();
    let _logging = log_into(&logs);
    let capture = SpanCapture::new();

    let untrusted = support::builder(&server, &capture, PREFIX)
        .url(url.clone())
        .credentials(Credentials::default())
        .connect_retry(ConnectRetry {
            max_attempts: Some(3),
            backoff: nats_trace_runtime::Backoff::new(
                Duration::from_millis(10),
                Duration::from_millis(10),
            ),
        })
        .start()
        .await;
    assert!(untrusted.is_err(), "the test CA is not trusted by default");

    let running = support::builder(&server, &capture, PREFIX)
        .url(url.clone())
        .credentials(Credentials {
            tls_ca: Some(ca_path.clone()),
            ..Credentials::default()
        })
        .start()
        .await
        .expect("connects over TLS");
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(ca_path)
        .require_tls(true)
        .connect(url)
        .await
        .expect("test client over TLS");
    assert_eq!(echo(&client).await, "secret-free");
    running.stop().await.expect("clean stop");

    let key_body: String = key_pem.lines().nth(1).unwrap_or_default().to_string();
    assert!(key_body.len() > 20);
    let spans = capture.spans();
    assert!(!spans.is_empty());
    assert!(!all_attribute_values(&spans).contains(&key_body));
    assert!(!logs.text().contains(&key_body));
}

#[tokio::test]
async fn a_user_and_password_in_the_url_authenticate_and_never_show() {
    const PASSWORD: &str = "pa55-that-must-never-leak";
    let server = NatsServer::builder()
        .arg("--user")
        .arg("alice")
        .arg("--pass")
        .arg(PASSWORD)
        .start()
        .expect("server with a user");
    let logs = Buffer::default();
    let _logging = log_into(&logs);
    let capture = SpanCapture::new();
    let url = format!("nats://alice:{PASSWORD}@127.0.0.1:{}", server.port());
    let running = support::builder(&server, &capture, PREFIX)
        .url(url)
        .start()
        .await
        .expect("connects with the URL's user and password");
    let client =
        async_nats::ConnectOptions::with_user_and_password("alice".into(), PASSWORD.into())
            .connect(server.url())
            .await
            .expect("test client");
    assert_eq!(echo(&client).await, "secret-free");
    running.stop().await.expect("clean stop");
    assert!(!all_attribute_values(&capture.spans()).contains(PASSWORD));
    let logs = logs.text();
    assert!(logs.contains("nats://***@127.0.0.1"), "{logs}");
    assert!(!logs.contains(PASSWORD), "{logs}");
}
