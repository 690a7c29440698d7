//! Who may call what on the HTTP API: the credentials, and the one decision every route takes
//! before its body is read. Safe by default: without a credential configured, only a
//! collector listening on loopback answers reads and admin requests (any local user can reach
//! loopback, as with Prometheus' admin API); on any other address those routes are off until
//! `admin_token` (both) or `read_token` (reads) is set.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, StatusCode};
use tocsin_config::Secret;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Reading state: alerts, hosts, silences, notifications, actions, audit, incidents.
    Read,
    /// Changing it: silences, acks, incidents, tokens, retries.
    Admin,
    /// Posting alerts raised elsewhere (`/api/v2/alerts`): `external_alerts.token` or admin.
    Send,
}

impl Need {
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Read => "read",
            Need::Admin => "admin",
            Need::Send => "alerts",
        }
    }
}

/// What a signed-in person may do: the credential they signed in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Read,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Read => "read",
        }
    }

    pub fn allows(self, need: Need) -> bool {
        self == Role::Admin || need == Need::Read
    }
}

/// Why a request is refused: its status and a message that names no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

/// The API's credentials and where it listens.
#[derive(Clone)]
pub struct Access {
    admin: Option<Secret>,
    read: Option<Secret>,
    /// Senders of alerts raised elsewhere.
    send: Option<Secret>,
    listen: SocketAddr,
}

impl Access {
    pub fn new(admin: Option<Secret>, read: Option<Secret>, listen: SocketAddr) -> Self {
        Self {
            admin,
            read,
            send: None,
            listen,
        }
    }

    /// With the credential of senders of alerts (`external_alerts.token`).
    pub fn with_senders(mut self, token: Option<Secret>) -> Self {
        self.send = token;
        self
    }

    /// Whether nobody beyond this machine can connect.
    fn loopback_only(&self) -> bool {
        self.listen.ip().is_loopback()
    }

    /// Why agents' routes are off when no agent credential is configured (no `ingest.token`,
    /// no agent token ever issued): beyond loopback a collector takes no series and hands out
    /// no remediation from anyone; on loopback only this machine can reach it.
    pub fn agents_off(&self) -> Option<String> {
        (!self.loopback_only()).then(|| {
            format!(
                "ingest is off: this collector listens on {} beyond loopback and has neither ingest.token nor any agent tokens",
                self.listen
            )
        })
    }

    /// A warning for the start-up log when some routes are off.
    pub fn startup_warning(&self) -> Option<String> {
        if self.loopback_only() || self.admin.is_some() {
            return None;
        }
        Some(format!(
            "listening on {} beyond loopback without admin_token: the admin API is off{}",
            self.listen,
            if self.read.is_none() {
                ", and so is the read API (set read_token or admin_token)"
            } else {
                ""
            }
        ))
    }

    /// The role a credential signs in as, if it is one of the configured ones.
    pub fn sign_in(&self, credential: &str) -> Option<Role> {
        let is = |t: &Option<Secret>| {
            t.as_ref()
                .is_some_and(|t| constant_time_eq(credential.as_bytes(), t.expose().as_bytes()))
        };
        if is(&self.admin) {
            Some(Role::Admin)
        } else if is(&self.read) {
            Some(Role::Read)
        } else {
            None
        }
    }

    /// What a request without any credential may do: a collector on loopback with no
    /// credential configured is open (`None`: nothing).
    pub fn without_credential(&self) -> Option<Role> {
        let empty = HeaderMap::new();
        if self.check(&empty, Need::Admin).is_ok() {
            Some(Role::Admin)
        } else if self.check(&empty, Need::Read).is_ok() {
            Some(Role::Read)
        } else {
            None
        }
    }

    /// Whether `headers` may do what `need` asks. On loopback, reads need a credential only
    /// once `read_token` is set; beyond it, always.
    pub fn check(&self, headers: &HeaderMap, need: Need) -> Result<(), Denied> {
        let accepted: Vec<&Secret> = match need {
            Need::Admin => self.admin.iter().collect(),
            Need::Read if self.read.is_none() && self.loopback_only() => Vec::new(),
            Need::Read => self.admin.iter().chain(self.read.iter()).collect(),
            Need::Send => self.admin.iter().chain(self.send.iter()).collect(),
        };
        if accepted.is_empty() {
            return if self.loopback_only() {
                Ok(())
            } else {
                Err(Denied {
                    status: StatusCode::FORBIDDEN,
                    reason: "disabled",
                    message: format!(
                        "the {} API is off: this collector listens on {} beyond loopback and {} is not set",
                        need.as_str(),
                        self.listen,
                        match need {
                            Need::Admin => "admin_token",
                            Need::Read => "read_token (or admin_token)",
                            Need::Send => "external_alerts.token (or admin_token)",
                        }
                    ),
                })
            };
        }
        let given = bearer(headers);
        if given.is_some_and(|g| {
            accepted
                .iter()
                .any(|t| constant_time_eq(g.as_bytes(), t.expose().as_bytes()))
        }) {
            return Ok(());
        }
        Err(Denied {
            status: StatusCode::UNAUTHORIZED,
            reason: "unauthorized",
            message: format!(
                "missing or wrong {} token",
                match need {
                    Need::Admin => "admin",
                    Need::Read => "read (or admin)",
                    Need::Send => "external_alerts (or admin)",
                }
            ),
        })
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Compares in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(token: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = token {
            h.insert(
                header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
        }
        h
    }

    const LOOPBACK: &str = "127.0.0.1:9760";
    const NETWORK: &str = "0.0.0.0:9760";

    /// (listen, admin token, read token, token sent, need) → status (200: allowed).
    #[test]
    fn who_may_do_what() {
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Need,
            u16,
        );
        let cases: &[Case] = &[
            // No credential configured: loopback answers, the network does not.
            (LOOPBACK, None, None, None, Need::Admin, 200),
            (LOOPBACK, None, None, None, Need::Read, 200),
            (NETWORK, None, None, None, Need::Admin, 403),
            (NETWORK, None, None, None, Need::Read, 403),
            ("[::]:9760", None, None, None, Need::Admin, 403),
            ("[::1]:9760", None, None, None, Need::Admin, 200),
            ("10.0.0.5:9760", None, None, Some("x"), Need::Admin, 403),
            // A read token opens reads only.
            (
                NETWORK,
                None,
                Some("R-s3cret"),
                Some("R-s3cret"),
                Need::Read,
                200,
            ),
            (NETWORK, None, Some("R-s3cret"), None, Need::Read, 401),
            (
                NETWORK,
                None,
                Some("R-s3cret"),
                Some("R-s3cret"),
                Need::Admin,
                403,
            ),
            // The admin token opens both, on any address; the read token never admin.
            (
                NETWORK,
                Some("A-s3cret"),
                Some("R-s3cret"),
                Some("A-s3cret"),
                Need::Admin,
                200,
            ),
            (
                NETWORK,
                Some("A-s3cret"),
                Some("R-s3cret"),
                Some("A-s3cret"),
                Need::Read,
                200,
            ),
            (
                NETWORK,
                Some("A-s3cret"),
                Some("R-s3cret"),
                Some("R-s3cret"),
                Need::Admin,
                401,
            ),
            (LOOPBACK, Some("A-s3cret"), None, None, Need::Admin, 401),
            (LOOPBACK, Some("A-s3cret"), None, None, Need::Read, 200),
            (LOOPBACK, None, Some("R-s3cret"), None, Need::Read, 401),
            (LOOPBACK, None, Some("R-s3cret"), None, Need::Admin, 200),
            (NETWORK, Some("A-s3cret"), None, None, Need::Read, 401),
            (
                LOOPBACK,
                Some("A-s3cret"),
                None,
                Some("A-s3cretX"),
                Need::Admin,
                401,
            ),
            (
                LOOPBACK,
                Some("A-s3cret"),
                None,
                Some("A-s3cret"),
                Need::Read,
                200,
            ),
        ];
        for &(listen, admin, read, sent, need, want) in cases {
            let a = Access::new(
                admin.map(Secret::new),
                read.map(Secret::new),
                listen.parse().unwrap(),
            );
            let got = match a.check(&with(sent), need) {
                Ok(()) => 200,
                Err(d) => {
                    for secret in [admin, read].into_iter().flatten() {
                        assert!(!d.message.contains(secret), "{}", d.message);
                    }
                    d.status.as_u16()
                }
            };
            assert_eq!(
                got, want,
                "{listen} admin={admin:?} read={read:?} sent={sent:?} {need:?}"
            );
        }
    }

    #[test]
    fn a_network_listener_without_admin_token_says_so_at_start() {
        let a = Access::new(None, None, NETWORK.parse().unwrap());
        assert!(a.startup_warning().unwrap().contains("admin API is off"));
        let a = Access::new(None, None, LOOPBACK.parse().unwrap());
        assert_eq!(a.startup_warning(), None);
    }

    #[test]
    fn constant_time() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
