//! Who may connect and what they may do: password file, client-certificate identity, ACLs and
//! the TLS server configuration, all reloadable while clients stay connected.
//!
//! # Layout
//! - [`passwd`]: mosquitto's password file (`$7$` PBKDF2-SHA512): parse, verify, write.
//! - [`acl`]: mosquitto's `acl_file`: parse, compile per client, check.
//! - [`identity`]: the user name a client certificate stands for (CN or SAN).
//! - [`tls`]: the rustls server configuration from PEM files.
//!
//! # Sharing and reload
//! One [`Security`] is shared by all shards. What it holds is read rarely: a connection takes an
//! `Arc<Policy>` snapshot at CONNECT, compiles the ACL rules that apply to it, and afterwards
//! only compares [`Security::generation`] (one relaxed atomic load) per PUBLISH and delivery,
//! recompiling when a reload bumped it. [`Security::reload`] re-reads every file and swaps the
//! snapshot only if all of them are valid, so a typo during SIGHUP leaves the old rules in force.

pub mod acl;
pub mod identity;
pub mod passwd;
pub mod tls;

use std::{
    cell::{Cell, RefCell},
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
};

use crate::config::CertIdentity;
pub use acl::{Acl, ClientRules};
pub use passwd::PasswordFile;

use protocol::ByteStr;

use crate::config::{AuthSettings, Config, TlsSettings};

/// Why security settings cannot be loaded. Messages name the file and never its secrets.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The password file is malformed.
    #[error("password file {path}: {source}")]
    Passwd {
        /// The path.
        path: String,
        /// What is wrong.
        source: passwd::PasswdError,
    },
    /// The ACL file is malformed.
    #[error("ACL file {path}: {source}")]
    Acl {
        /// The path.
        path: String,
        /// What is wrong.
        source: acl::AclError,
    },
    /// The TLS configuration cannot be built.
    #[error("TLS: {0}")]
    Tls(String),
}

impl SecurityError {
    fn file(path: &Path, source: std::io::Error) -> SecurityError {
        SecurityError::File {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The rules in force: one immutable snapshot, replaced as a whole on reload.
#[derive(Debug, Default)]
pub struct Policy {
    passwords: Option<PasswordFile>,
    acl: Option<Acl>,
    allow_anonymous: bool,
    /// True when clients are expected to prove who they are (password file or client CA).
    authenticates: bool,
    cert_identity: CertIdentity,
}

/// Who a client is once CONNECT is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials (or credentials nobody can check), let in by configuration.
    Anonymous,
    /// A user named by a verified certificate or a checked password.
    User(String),
}

impl Identity {
    /// The user name, if any.
    pub fn username(&self) -> Option<&str> {
        match self {
            Identity::Anonymous => None,
            Identity::User(u) => Some(u),
        }
    }
}

/// A refused login. Carries nothing on purpose: what was wrong is not told to anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// What a client offers to prove who it is.
#[derive(Debug, Default)]
pub struct Credentials<'a> {
    /// The user name a verified client certificate stands for.
    pub cert_user: Option<&'a str>,
    /// CONNECT's user name.
    pub username: Option<&'a str>,
    /// CONNECT's password.
    pub password: Option<&'a [u8]>,
}

impl Policy {
    /// Decides who the client is, or refuses it. The refusal is deliberately uninformative:
    /// a wrong user and a wrong password look the same to the client.
    pub fn authenticate(&self, creds: &Credentials<'_>) -> Result<Identity, Refused> {
        if let Some(user) = creds
            .cert_user
            .filter(|_| self.cert_identity != CertIdentity::Off)
        {
            // A verified certificate names the client; a user name it also sends is ignored,
            // so a vehicle's certificate can never be combined with another user's name.
            return Ok(Identity::User(user.to_string()));
        }
        match (&self.passwords, creds.username) {
            (Some(file), Some(user)) => {
                if file.verify(user, creds.password.unwrap_or_default()) {
                    Ok(Identity::User(user.to_string()))
                } else {
                    Err(Refused)
                }
            }
            // Nobody can check a claimed user name: it is not an identity the ACL may trust.
            _ if self.allow_anonymous || !self.authenticates => Ok(Identity::Anonymous),
            _ => Err(Refused),
        }
    }

    /// The ACL rules that apply to a client.
    pub fn rules_for(&self, identity: &Identity, client_id: &str) -> ClientRules {
        match &self.acl {
            Some(acl) => acl.rules_for(identity.username(), client_id),
            None => ClientRules::allow_all(),
        }
    }
}

/// The security settings in force, shared by every shard and swapped on reload.
#[derive(Debug)]
pub struct Security {
    auth: AuthSettings,
    tls: TlsSettings,
    tls_enabled: bool,
    authenticates: bool,
    policy: RwLock<Arc<Policy>>,
    generation: AtomicU64,
    server_config: RwLock<Option<Arc<rustls::ServerConfig>>>,
}

impl Security {
    /// Reads every file the configuration names.
    ///
    /// # Errors
    /// The first file that cannot be read or used.
    pub fn load(config: &Config) -> Result<Security, SecurityError> {
        let tls_enabled = config.mqtts.is_some() || config.https.is_some();
        let security = Security {
            auth: config.auth.clone(),
            tls: config.tls.clone(),
            tls_enabled,
            authenticates: config.authenticates(),
            policy: RwLock::new(Arc::new(Policy::default())),
            generation: AtomicU64::new(0),
            server_config: RwLock::new(None),
        };
        security.reload()?;
        Ok(security)
    }

    /// Nothing checked: every client allowed (for tests of other parts).
    pub fn open() -> Security {
        let config = Config::default();
        Security {
            auth: config.auth,
            tls: config.tls,
            tls_enabled: false,
            authenticates: false,
            policy: RwLock::new(Arc::new(Policy::default())),
            generation: AtomicU64::new(0),
            server_config: RwLock::new(None),
        }
    }

    /// Re-reads the password file, the ACL file and the certificates; swaps them in only if
    /// all are valid. Connections stay up: TLS sessions keep the keys they negotiated, and each
    /// connection's ACL rules are recompiled at its next check.
    ///
    /// # Errors
    /// The first file that cannot be read or used; the old settings stay in force.
    pub fn reload(&self) -> Result<(), SecurityError> {
        let passwords = match &self.auth.password_file {
            Some(path) => {
                let text = read_text(path)?;
                Some(
                    PasswordFile::parse(&text).map_err(|source| SecurityError::Passwd {
                        path: path.display().to_string(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let acl = match &self.auth.acl_file {
            Some(path) => {
                let text = read_text(path)?;
                Some(Acl::parse(&text).map_err(|source| SecurityError::Acl {
                    path: path.display().to_string(),
                    source,
                })?)
            }
            None => None,
        };
        let server_config = if self.tls_enabled {
            Some(tls::server_config(&self.tls)?)
        } else {
            None
        };
        let policy = Arc::new(Policy {
            passwords,
            acl,
            allow_anonymous: self.auth.allow_anonymous,
            authenticates: self.authenticates,
            cert_identity: self.tls.cert_identity,
        });
        if let Ok(mut slot) = self.policy.write() {
            *slot = policy;
        }
        if let Ok(mut slot) = self.server_config.write() {
            *slot = server_config;
        }
        // After the swap: a reader that sees the new generation also sees the new policy.
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The rules in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Bumped by every successful reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The TLS acceptor for new connections, when a TLS listener is configured.
    pub fn tls_acceptor(&self) -> Option<futures_rustls::TlsAcceptor> {
        let config = self
            .server_config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())?;
        Some(futures_rustls::TlsAcceptor::from(config))
    }

    /// Which certificate field names a TLS client.
    pub fn cert_identity(&self) -> CertIdentity {
        self.tls.cert_identity
    }
}

fn read_text(path: &Path) -> Result<String, SecurityError> {
    std::fs::read_to_string(path).map_err(|e| SecurityError::file(path, e))
}

/// The ACL rules a client works with, recompiled when the policy was reloaded.
///
/// One per connected client, shared (`Rc`) by its connection, which checks what it publishes
/// and subscribes to, and its session slot, which checks what is delivered to it.
#[derive(Debug)]
pub struct ClientAccess {
    identity: Identity,
    /// The session's own id (shared bytes, not a copy).
    client_id: ByteStr,
    /// The policy generation `rules` were compiled under.
    generation: Cell<u64>,
    rules: RefCell<ClientRules>,
}

impl ClientAccess {
    /// Compiles the rules for a client under `policy` (taken at `generation`).
    pub fn new(policy: &Policy, generation: u64, identity: Identity, client_id: ByteStr) -> Self {
        let rules = policy.rules_for(&identity, &client_id);
        ClientAccess {
            identity,
            client_id,
            generation: Cell::new(generation),
            rules: RefCell::new(rules),
        }
    }

    /// May the client publish to `topic` under the rules in force now?
    pub fn can_write(&self, security: &Security, topic: &str) -> bool {
        self.current(security).can_write(topic)
    }

    /// May the client be sent a message on `topic` under the rules in force now?
    pub fn can_read(&self, security: &Security, topic: &str) -> bool {
        self.current(security).can_read(topic)
    }

    /// May the client subscribe to `filter` under the rules in force now?
    pub fn can_subscribe(&self, security: &Security, filter: &str) -> bool {
        self.current(security).can_subscribe(filter)
    }

    /// The current rules: recompiled first if `security` was reloaded since.
    fn current(&self, security: &Security) -> std::cell::Ref<'_, ClientRules> {
        let generation = security.generation();
        if generation != self.generation.get() {
            let policy = security.policy();
            *self.rules.borrow_mut() = policy.rules_for(&self.identity, &self.client_id);
            self.generation.set(generation);
        }
        self.rules.borrow()
    }

    /// Who the client is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The client's id.
    pub fn client_id(&self) -> &ByteStr {
        &self.client_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice:$7$101$drtj5p/st2hw71LI$VJj2RxODHn2gbCK3z00mI6w7yfewlsiC7CEjgVj0xiirWiWkvaFr7p4psr5UZqegPPmUY+0M3cnA7PjQIjImsA==";

    fn policy(allow_anonymous: bool, cert_identity: CertIdentity) -> Policy {
        Policy {
            passwords: Some(PasswordFile::parse(ALICE).unwrap()),
            acl: None,
            allow_anonymous,
            authenticates: true,
            cert_identity,
        }
    }

    fn creds<'a>(
        cert: Option<&'a str>,
        user: Option<&'a str>,
        pw: Option<&'a [u8]>,
    ) -> Credentials<'a> {
        Credentials {
            cert_user: cert,
            username: user,
            password: pw,
        }
    }

    #[test]
    fn passwords_certificates_and_anonymous() {
        let p = policy(false, CertIdentity::Cn);
        let ok = p.authenticate(&creds(None, Some("alice"), Some(b"secret")));
        assert_eq!(ok, Ok(Identity::User("alice".into())));
        assert!(p
            .authenticate(&creds(None, Some("alice"), Some(b"x")))
            .is_err());
        assert!(p.authenticate(&creds(None, Some("alice"), None)).is_err());
        assert!(p
            .authenticate(&creds(None, Some("bob"), Some(b"secret")))
            .is_err());
        assert!(p.authenticate(&creds(None, None, None)).is_err());
        // The certificate names the client, whatever user name it also claims.
        assert_eq!(
            p.authenticate(&creds(Some("v1"), Some("alice"), None)),
            Ok(Identity::User("v1".into()))
        );
        let off = policy(false, CertIdentity::Off);
        assert!(off.authenticate(&creds(Some("v1"), None, None)).is_err());

        let anon = policy(true, CertIdentity::Cn);
        assert_eq!(
            anon.authenticate(&creds(None, None, None)),
            Ok(Identity::Anonymous)
        );
        assert!(
            anon.authenticate(&creds(None, Some("alice"), Some(b"x")))
                .is_err(),
            "allow_anonymous does not turn a wrong password into anonymous access"
        );
    }

    #[test]
    fn without_authentication_a_claimed_name_is_not_trusted() {
        let p = Policy::default();
        assert_eq!(
            p.authenticate(&creds(None, Some("dashboard"), Some(b"x"))),
            Ok(Identity::Anonymous)
        );
    }
}
