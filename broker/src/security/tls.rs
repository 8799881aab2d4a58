//! The TLS server configuration: certificate chain and key from PEM files, TLS 1.2 and 1.3,
//! optional or required client certificates verified against a CA.

use std::{fs, path::Path, sync::Arc};

use rustls::{
    crypto::ring::default_provider,
    server::{danger::ClientCertVerifier, WebPkiClientVerifier},
    RootCertStore, ServerConfig,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use super::SecurityError;
use crate::config::TlsSettings;

/// Reads the files named by `tls` and builds the server configuration.
///
/// # Errors
/// A file that cannot be read or parsed, a key readable by others, a key that does not fit.
pub fn server_config(tls: &TlsSettings) -> Result<Arc<ServerConfig>, SecurityError> {
    let (Some(cert_path), Some(key_path)) = (&tls.cert, &tls.key) else {
        return Err(SecurityError::Tls(
            "tls.cert and tls.key (--tls-cert, --tls-key) are both needed".into(),
        ));
    };
    let chain = read_certs(cert_path)?;
    let key = read_key(key_path)?;
    let provider = Arc::new(default_provider());
    let verifier: Arc<dyn ClientCertVerifier> =
        match &tls.client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(ca)? {
                    roots.add(cert).map_err(|e| {
                        SecurityError::Tls(format!("{}: not a usable CA: {e}", ca.display()))
                    })?;
                }
                let builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let builder = if tls.require_client_cert {
                    builder
                } else {
                    builder.allow_unauthenticated()
                };
                builder
                    .build()
                    .map_err(|e| SecurityError::Tls(format!("{}: {e}", ca.display())))?
            }
            None if tls.require_client_cert => return Err(SecurityError::Tls(
                "tls.require_client_cert needs tls.client_ca (--client-ca) to verify them against"
                    .into(),
            )),
            None => WebPkiClientVerifier::no_client_auth(),
        };
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| SecurityError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            SecurityError::Tls(format!(
                "{} and {}: {e}",
                cert_path.display(),
                key_path.display()
            ))
        })?;
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let pem = fs::read(path).map_err(|e| SecurityError::file(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SecurityError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(SecurityError::Tls(format!(
            "{}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// Reads a private key, refusing one that others may read or anyone but its owner may change.
/// Group read is tolerated (Debian's `ssl-cert` group convention).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, SecurityError> {
    check_key_permissions(path)?;
    let pem = fs::read(path).map_err(|e| SecurityError::file(path, e))?;
    // The error never includes the key material: only the path and what was wrong.
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| SecurityError::Tls(format!("{}: no usable private key: {e}", path.display())))
}

/// Refuses a key file whose mode lets others read it or anyone but the owner write it.
///
/// # Errors
/// The path, its mode and the `chmod` that fixes it.
pub fn check_key_permissions(path: &Path) -> Result<(), SecurityError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|e| SecurityError::file(path, e))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o037 != 0 {
        return Err(SecurityError::Tls(format!(
            "{}: private key has loose permissions {mode:03o}; run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}
