//! Credentials and TLS settings for the NATS connection, from the standard
//! places. Secrets are never logged, never put on spans, and never shown by
//! `Debug`.

use std::fmt;
use std::path::PathBuf;

use async_nats::ConnectOptions;

use crate::error::Error;

/// How the runtime authenticates to NATS and checks the server's TLS
/// certificate. [`Credentials::from_env`] reads:
///
/// | variable | meaning |
/// |---|---|
/// | `NATS_CREDS` | a `.creds` file (JWT and NKey seed) |
/// | `NATS_NKEY` | an NKey seed |
/// | `NATS_TOKEN` | a token |
/// | `NATS_USER`, `NATS_PASSWORD` | user and password |
/// | `NATS_CA` | a CA certificate (PEM) to trust; turns TLS on |
/// | `NATS_CERT`, `NATS_KEY` | a client certificate and key (PEM) |
///
/// A user, password or token in the URL (`nats://token@host`) works too.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// A `.creds` file.
    pub creds_file: Option<PathBuf>,
    /// An NKey seed.
    pub nkey_seed: Option<String>,
    /// A token.
    pub token: Option<String>,
    /// User and password.
    pub user_password: Option<(String, String)>,
    /// A CA certificate to trust; TLS is then required.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and key.
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

impl Credentials {
    /// Reads the variables listed on [`Credentials`].
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the same settings through `lookup`, e.g. a map in tests.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|value| !value.is_empty());
        Credentials {
            creds_file: get("NATS_CREDS").map(PathBuf::from),
            nkey_seed: get("NATS_NKEY"),
            token: get("NATS_TOKEN"),
            user_password: get("NATS_USER")
                .map(|user| (user, get("NATS_PASSWORD").unwrap_or_default())),
            tls_ca: get("NATS_CA").map(PathBuf::from),
            tls_client: get("NATS_CERT")
                .zip(get("NATS_KEY"))
                .map(|(c, k)| (c.into(), k.into())),
        }
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Credentials::default()
    }

    /// Applies the settings to connect options.
    pub(crate) async fn apply(&self, mut options: ConnectOptions) -> Result<ConnectOptions, Error> {
        if let Some(path) = &self.creds_file {
            options = options.credentials_file(path).await.map_err(|error| {
                Error::Config(format!(
                    "cannot read NATS credentials file {}: {error}",
                    path.display()
                ))
            })?;
        }
        if let Some(seed) = &self.nkey_seed {
            options = options.nkey(seed.clone());
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some((user, password)) = &self.user_password {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &self.tls_client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(options)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |present: bool| if present { "<set>" } else { "-" };
        f.debug_struct("Credentials")
            .field("creds_file", &self.creds_file)
            .field("nkey_seed", &set(self.nkey_seed.is_some()))
            .field("token", &set(self.token.is_some()))
            .field("user", &self.user_password.as_ref().map(|(user, _)| user))
            .field("password", &set(self.user_password.is_some()))
            .field("tls_ca", &self.tls_ca)
            .field("tls_client", &self.tls_client)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let credentials = Credentials::from_lookup(|name| match name {
            "NATS_TOKEN" => Some("s3cr3t-token".into()),
            "NATS_USER" => Some("alice".into()),
            "NATS_PASSWORD" => Some("hunter2".into()),
            "NATS_NKEY" => {
                Some("SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY".into())
            }
            _ => None,
        });
        let shown = format!("{credentials:?}");
        for secret in ["s3cr3t-token", "hunter2", "SUAMK2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("alice"));
        assert!(Credentials::from_lookup(|_| None).is_empty());
    }
}
