//! Connecting to NATS, with retries for the initial connect.

use std::time::Duration;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::backoff::Backoff;
use crate::credentials::Credentials;
use crate::error::Error;
use crate::telemetry::metrics::Metrics;
use async_nats::{Client, ConnectErrorKind, ConnectOptions};

/// The URL used when neither the builder nor `NATS_URL` gives one.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// The server URL from `NATS_URL`, or [`DEFAULT_URL`].
pub fn url_from_env() -> String {
    std::env::var("NATS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_string())
}

/// How the initial connect is retried. Once connected, the client
/// reconnects by itself.
#[derive(Debug, Clone)]
pub struct ConnectRetry {
    /// Attempts before giving up; `None` retries forever.
    pub max_attempts: Option<u32>,
    /// The delay between attempts.
    pub backoff: Backoff,
}

impl Default for ConnectRetry {
    /// 10 attempts, from 100 ms doubling up to 5 s: about 20 s in all.
    fn default() -> Self {
        ConnectRetry {
            max_attempts: Some(10),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        }
    }
}

/// Connection events, counted since the runtime started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Times the connection was lost.
    pub disconnects: u64,
    /// Times it came back after being lost.
    pub reconnects: u64,
    /// Times the client dropped messages because a subscription fell behind.
    pub slow_consumers: u64,
    /// Times the server announced it is shutting down (lame duck mode).
    pub lame_duck: u64,
    /// Errors the server reported.
    pub server_errors: u64,
}

/// Counts and logs connection events, and records them as metrics once the
/// runtime's instruments exist.
#[derive(Debug, Default)]
pub(crate) struct ConnectionEvents {
    disconnects: AtomicU64,
    reconnects: AtomicU64,
    slow_consumers: AtomicU64,
    lame_duck: AtomicU64,
    server_errors: AtomicU64,
    connected_once: AtomicBool,
    metrics: OnceLock<Metrics>,
}

impl ConnectionEvents {
    pub(crate) fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            disconnects: self.disconnects.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            slow_consumers: self.slow_consumers.load(Ordering::Relaxed),
            lame_duck: self.lame_duck.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn set_metrics(&self, metrics: Metrics) {
        let _ = self.metrics.set(metrics);
    }

    fn record(&self, event: async_nats::Event) {
        use async_nats::Event;
        let (counter, name) = match &event {
            Event::Connected => {
                if !self.connected_once.swap(true, Ordering::Relaxed) {
                    return;
                }
                tracing::info!("reconnected to NATS");
                (&self.reconnects, "reconnected")
            }
            Event::Disconnected => {
                tracing::warn!("disconnected from NATS; reconnecting");
                (&self.disconnects, "disconnected")
            }
            Event::SlowConsumer(sid) => {
                tracing::warn!(
                    subscription = sid,
                    "slow consumer: the client dropped messages for a subscription that fell behind"
                );
                (&self.slow_consumers, "slow_consumer")
            }
            Event::LameDuckMode => {
                tracing::warn!("the NATS server is shutting down (lame duck mode)");
                (&self.lame_duck, "lame_duck")
            }
            Event::ServerError(error) => {
                tracing::warn!(%error, "NATS server error");
                (&self.server_errors, "server_error")
            }
            other => {
                tracing::debug!(event = %other, "NATS connection event");
                return;
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(metrics) = self.metrics.get() {
            metrics.connection_event(name);
        }
    }
}

/// Connects to `url`, retrying as `retry` says, with `credentials`, and
/// reporting connection events to `events`.
pub(crate) async fn connect(
    url: &str,
    retry: &ConnectRetry,
    credentials: &Credentials,
    events: &Arc<ConnectionEvents>,
) -> Result<Client, Error> {
    let shown = redact(url);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let sink = events.clone();
        let options = ConnectOptions::new()
            .name("nats-trace")
            .event_callback(move |event| {
                let sink = sink.clone();
                async move { sink.record(event) }
            });
        let options = credentials.apply(options).await?;
        // async-nats reads no credentials from the URL; NATS convention is
        // `nats://token@host` and `nats://user:password@host`.
        let (options, target) = match url_credentials(url) {
            Some((UrlCredentials::Token(token), bare)) if credentials.token.is_none() => {
                (options.token(token), bare)
            }
            Some((UrlCredentials::UserPassword(user, password), bare))
                if credentials.user_password.is_none() =>
            {
                (options.user_and_password(user, password), bare)
            }
            _ => (options, url.to_string()),
        };
        match options.connect(target.as_str()).await {
            Ok(client) => {
                tracing::info!(url = %shown, "connected to NATS");
                return Ok(client);
            }
            Err(error) if error.kind() == ConnectErrorKind::ServerParse => {
                return Err(Error::Config(format!("invalid NATS URL {shown}: {error}")));
            }
            // Wrong credentials or TLS settings do not heal by retrying.
            Err(source)
                if matches!(
                    source.kind(),
                    ConnectErrorKind::Authentication
                        | ConnectErrorKind::AuthorizationViolation
                        | ConnectErrorKind::Tls
                ) =>
            {
                return Err(Error::Connect {
                    url: shown,
                    attempts: attempt,
                    source,
                });
            }
            Err(error) if retry.max_attempts.is_none_or(|max| attempt < max) => {
                let delay = retry.backoff.delay(attempt);
                tracing::warn!(url = %shown, attempt, %error, retry_in = ?delay, "connecting to NATS failed");
                tokio::time::sleep(delay).await;
            }
            Err(source) => {
                return Err(Error::Connect {
                    url: shown,
                    attempts: attempt,
                    source,
                });
            }
        }
    }
}

/// The `server.address` and `server.port` of a connection: the host and
/// port of the URL when it names one server (the server's own INFO often
/// says `0.0.0.0`), else what the server reports, unless that is a wildcard.
pub(crate) fn server_address(
    url: Option<&str>,
    info: &async_nats::ServerInfo,
) -> (Option<String>, u16) {
    let single = url.filter(|url| !url.contains(','));
    if let Some((host, port)) = single.and_then(host_and_port) {
        return (Some(host), port.unwrap_or(info.port));
    }
    let wildcard = matches!(info.host.as_str(), "" | "0.0.0.0" | "::" | "[::]");
    ((!wildcard).then(|| info.host.clone()), info.port)
}

fn host_and_port(url: &str) -> Option<(String, Option<u16>)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next()?.trim();
    if authority.is_empty() {
        return None;
    }
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok())),
        None => Some((authority.to_string(), None)),
    }
}

/// Credentials written into a URL.
#[derive(Debug, PartialEq, Eq)]
enum UrlCredentials {
    /// `nats://token@host`.
    Token(String),
    /// `nats://user:password@host`.
    UserPassword(String, String),
}

/// The credentials in a single-server URL, and the URL without them.
/// Server lists are passed on untouched.
fn url_credentials(url: &str) -> Option<(UrlCredentials, String)> {
    if url.contains(',') {
        return None;
    }
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(s, r)| (s, r));
    let (userinfo, host) = rest.rsplit_once('@')?;
    if userinfo.is_empty() {
        return None;
    }
    let bare = if scheme.is_empty() {
        host.to_string()
    } else {
        format!("{scheme}://{host}")
    };
    let credentials = match userinfo.split_once(':') {
        Some((user, password)) => {
            UrlCredentials::UserPassword(user.to_string(), password.to_string())
        }
        None => UrlCredentials::Token(userinfo.to_string()),
    };
    Some((credentials, bare))
}

/// `url` with any user, password or token replaced by `***`, for logs.
pub fn redact(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let (scheme, rest) = match server.find("://") {
                Some(i) => server.split_at(i + 3),
                None => ("", server),
            };
            match rest.rfind('@') {
                Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
                None => server.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Waits until the server has processed everything this client sent so far,
/// e.g. its subscriptions, by a round trip through a private inbox.
pub(crate) async fn round_trip(client: &Client) -> Result<(), Error> {
    use futures_util::StreamExt;
    let inbox = client.new_inbox();
    let mut probe = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| Error::Connection(e.to_string()))?;
    client
        .publish(inbox, bytes::Bytes::new())
        .await
        .map_err(|e| Error::Connection(e.to_string()))?;
    match tokio::time::timeout(Duration::from_secs(10), probe.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Error::Connection(
            "connection closed while subscribing".into(),
        )),
        Err(_) => Err(Error::Connection(
            "the server did not confirm the subscriptions within 10 s".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_logs() {
        assert_eq!(
            redact("nats://user:secret@host:4222"),
            "nats://***@host:4222"
        );
        assert_eq!(
            redact("nats://tok@h:1,nats://h2:2"),
            "nats://***@h:1,nats://h2:2"
        );
        assert_eq!(redact("localhost:4222"), "localhost:4222");
    }

    #[test]
    fn credentials_in_the_url_are_taken_out() {
        assert_eq!(
            url_credentials("nats://s3cret@host:4222"),
            Some((
                UrlCredentials::Token("s3cret".into()),
                "nats://host:4222".into()
            ))
        );
        assert_eq!(
            url_credentials("nats://user:pa:ss@host:4222"),
            Some((
                UrlCredentials::UserPassword("user".into(), "pa:ss".into()),
                "nats://host:4222".into()
            ))
        );
        assert_eq!(url_credentials("nats://host:4222"), None);
        assert_eq!(url_credentials("nats://a@h:1,nats://h2:2"), None);
    }

    #[test]
    fn server_address_comes_from_a_single_server_url() {
        assert_eq!(
            host_and_port("nats://u:p@nats.local:4223"),
            Some(("nats.local".into(), Some(4223)))
        );
        assert_eq!(
            host_and_port("tls://[::1]:4222"),
            Some(("::1".into(), Some(4222)))
        );
        assert_eq!(host_and_port("localhost"), Some(("localhost".into(), None)));
    }
}
