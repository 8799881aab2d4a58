//! TLS client configuration for `mqtts://`: rustls with the ring provider.

use std::{path::Path, sync::Arc};

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

/// The system's CA bundle on Debian and its derivatives, used when no CA file is given.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why TLS cannot be configured.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("{path}: {why}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn pem_err(path: &Path, why: impl ToString) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// A client configuration trusting the CAs in `ca_file` (or the system bundle), presenting
/// `client_cert` + `client_key` when both are given.
///
/// # Errors
/// Unreadable or empty PEM files, a key that does not match the certificate.
pub fn client_config(
    ca_file: Option<&Path>,
    client_cert: Option<&Path>,
    client_key: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let ca = ca_file.unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|e| pem_err(ca, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(ca, e))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(pem_err(ca, "no usable CA certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (client_cert, client_key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem_err(cert, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| pem_err(cert, e))?;
            if chain.is_empty() {
                return Err(pem_err(cert, "no certificate"));
            }
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
