//! Which certificate authorities HTTPS trusts: the built-in webpki roots, or the PEM bundle
//! named by `SSL_CERT_FILE`, which replaces them as it does for OpenSSL (and so for curl, git
//! and Python): a private CA, or a company proxy that re-signs traffic. Verification itself
//! is never turned off.

use std::path::Path;

/// The environment variable naming a PEM bundle of trusted roots.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// The roots `SSL_CERT_FILE` names, or `None` when it is unset or empty (the built-in
/// roots apply). A file that cannot be read or holds no certificate is an error, never a
/// silent fallback.
pub fn from_env() -> Result<Option<Vec<reqwest::Certificate>>, String> {
    match std::env::var_os(SSL_CERT_FILE) {
        Some(path) if !path.is_empty() => read(Path::new(&path)).map(Some),
        _ => Ok(None),
    }
}

fn read(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("{SSL_CERT_FILE}={shown}: {e}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{SSL_CERT_FILE}={shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{SSL_CERT_FILE}={shown} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")"
        ));
    }
    Ok(certs)
}

/// The rustls root store: `SSL_CERT_FILE`'s certificates, or the webpki roots.
pub fn root_store() -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    match std::env::var_os(SSL_CERT_FILE) {
        Some(path) if !path.is_empty() => {
            let shown = Path::new(&path).display().to_string();
            let pem = std::fs::read(&path).map_err(|e| format!("{SSL_CERT_FILE}={shown}: {e}"))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{SSL_CERT_FILE}={shown}: {e}"))?;
                store
                    .add(cert)
                    .map_err(|e| format!("{SSL_CERT_FILE}={shown}: {e}"))?;
            }
            if store.is_empty() {
                return Err(format!(
                    "{SSL_CERT_FILE}={shown} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")"
                ));
            }
        }
        _ => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(store)
}

/// Makes a reqwest client builder, async or blocking (the same methods), trust `roots`
/// (from [`from_env`]) instead of the built-in roots; `None` leaves it as it is.
macro_rules! trust {
    ($builder:expr, $roots:expr) => {
        match $roots {
            None => $builder,
            Some(certs) => certs
                .into_iter()
                .fold($builder.tls_built_in_root_certs(false), |b, c| {
                    b.add_root_certificate(c)
                }),
        }
    };
}
pub(crate) use trust;
