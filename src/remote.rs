//! The new server, behind a trait: run commands over SSH.
//!
//! The SSH implementation accepts exactly one host key, the one baton generated for that
//! server and put in its user-data. A different key is an error that says so, never a
//! prompt and never trust on first use. While the server boots, connection failures are
//! retried until a deadline; a wrong host key is not (it will not get better).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect, Preferred};

use crate::identity::ssh::fingerprint;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last `n` lines of stderr, for error messages.
    pub fn stderr_tail(&self, n: usize) -> String {
        last_lines(&self.stderr, n)
    }

    /// The last `n` lines of stdout.
    pub fn stdout_tail(&self, n: usize) -> String {
        last_lines(&self.stdout, n)
    }
}

fn last_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "{addr} presented host key {got}, not the key baton generated for it ({expected}): refusing to connect\n  \
         fix: this is not the server baton created (an address reused, or someone in between); check the instance in the console"
    )]
    HostKeyMismatch {
        addr: SocketAddr,
        expected: String,
        got: String,
    },
    #[error("{addr} did not answer SSH within {waited:?}: {last}")]
    Unreachable {
        addr: SocketAddr,
        waited: Duration,
        last: String,
    },
    #[error("{addr} refused the admin key for user {user}")]
    AuthRefused { addr: SocketAddr, user: String },
    #[error("SSH to {addr}: {reason}")]
    Protocol { addr: SocketAddr, reason: String },
}

#[async_trait]
pub trait RemoteHost: Send + Sync {
    /// Runs a shell command line; `on_line` sees each line of output as it arrives.
    async fn exec(
        &self,
        command: &str,
        on_line: &(dyn Fn(String) + Send + Sync),
    ) -> Result<ExecOutput, RemoteError>;
}

/// Opens a [`RemoteHost`]: SSH in production, anything in a test.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Connects, retrying while the server boots, until `timeout`.
    async fn connect(
        &self,
        target: &SshTarget,
        timeout: Duration,
    ) -> Result<Box<dyn RemoteHost>, RemoteError>;
}

/// Connects with [`SshHost::connect_until`].
pub struct SshConnector;

#[async_trait]
impl Connector for SshConnector {
    async fn connect(
        &self,
        target: &SshTarget,
        timeout: Duration,
    ) -> Result<Box<dyn RemoteHost>, RemoteError> {
        Ok(Box::new(SshHost::connect_until(target, timeout).await?))
    }
}

/// Where and as whom to connect, and the only host key to accept.
#[derive(Clone)]
pub struct SshTarget {
    pub addr: SocketAddr,
    pub user: String,
    pub host_key: PublicKey,
    pub client_key: Arc<russh::keys::PrivateKey>,
}

struct Pinned {
    expected: PublicKey,
    presented: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        presented: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // A certificate is judged by the key it certifies: we pin the key itself.
        let key = match presented {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        };
        let matches = key.key_data() == self.expected.key_data();
        *crate::sync::lock(&self.presented) = Some(key);
        Ok(matches)
    }
}

pub struct SshHost {
    handle: Handle<Pinned>,
    addr: SocketAddr,
}

/// Single-quotes `s` for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl SshHost {
    /// One attempt to connect and authenticate.
    pub async fn connect(target: &SshTarget) -> Result<SshHost, RemoteError> {
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(120)),
            keepalive_interval: Some(Duration::from_secs(15)),
            // Only the plain key type we generated: the server shows its key, not a
            // certificate, and we compare it byte for byte.
            preferred: Preferred {
                key: Cow::Borrowed(&[russh::keys::Algorithm::Ed25519]),
                ..Default::default()
            },
            ..Default::default()
        });
        let presented = Arc::new(Mutex::new(None));
        let handler = Pinned {
            expected: target.host_key.clone(),
            presented: presented.clone(),
        };
        let addr = target.addr;
        let connect = tokio::time::timeout(
            Duration::from_secs(20),
            client::connect(config, addr, handler),
        )
        .await;
        let mut handle = match connect {
            Err(_) => {
                return Err(RemoteError::Protocol {
                    addr,
                    reason: "timed out during the SSH handshake".into(),
                });
            }
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let got = crate::sync::lock(&presented).clone();
                if let Some(got) = got.filter(|g| g.key_data() != target.host_key.key_data()) {
                    return Err(RemoteError::HostKeyMismatch {
                        addr,
                        expected: fingerprint(&target.host_key),
                        got: fingerprint(&got),
                    });
                }
                return Err(RemoteError::Protocol {
                    addr,
                    reason: e.to_string(),
                });
            }
        };
        let auth = handle
            .authenticate_publickey(
                target.user.clone(),
                PrivateKeyWithHashAlg::new(target.client_key.clone(), None),
            )
            .await
            .map_err(|e| RemoteError::Protocol {
                addr,
                reason: e.to_string(),
            })?;
        if !auth.success() {
            return Err(RemoteError::AuthRefused {
                addr,
                user: target.user.clone(),
            });
        }
        Ok(SshHost { handle, addr })
    }

    /// Connects, retrying while the server boots (refused, reset, no banner yet, user not
    /// yet created) until `timeout`. A wrong host key ends it at once.
    pub async fn connect_until(
        target: &SshTarget,
        timeout: Duration,
    ) -> Result<SshHost, RemoteError> {
        let start = Instant::now();
        let mut wait = Duration::from_millis(250);
        loop {
            let last = match Self::connect(target).await {
                Ok(h) => return Ok(h),
                Err(e @ RemoteError::HostKeyMismatch { .. }) => return Err(e),
                Err(e) => e.to_string(),
            };
            if start.elapsed() + wait > timeout {
                return Err(RemoteError::Unreachable {
                    addr: target.addr,
                    waited: start.elapsed(),
                    last,
                });
            }
            tracing::debug!("{} not ready: {last}", target.addr);
            tokio::time::sleep(wait).await;
            // A booting server is noticed at most a second late (BENCHMARKS.md).
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }

    fn protocol(&self, e: impl std::fmt::Display) -> RemoteError {
        RemoteError::Protocol {
            addr: self.addr,
            reason: e.to_string(),
        }
    }
}

#[async_trait]
impl RemoteHost for SshHost {
    async fn exec(
        &self,
        command: &str,
        on_line: &(dyn Fn(String) + Send + Sync),
    ) -> Result<ExecOutput, RemoteError> {
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.protocol(e))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.protocol(e))?;
        let mut out = ExecOutput::default();
        let mut status = None;
        let mut pending = Vec::new();
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    out.stdout.extend_from_slice(&data);
                    pending.extend_from_slice(&data);
                    while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=i).collect();
                        on_line(String::from_utf8_lossy(&line).trim_end().to_string());
                    }
                }
                ChannelMsg::ExtendedData { data, .. } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        if !pending.is_empty() {
            on_line(String::from_utf8_lossy(&pending).trim_end().to_string());
        }
        out.status = status.ok_or_else(|| {
            self.protocol(format!(
                "{command:?} ended without an exit status (killed by a signal?)"
            ))
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(super::quote("a b"), "'a b'");
        assert_eq!(super::quote("it's"), r"'it'\''s'");
    }
}
