//! Which certificate authorities HTTPS trusts: the built-in webpki roots, or the PEM bundle
//! named by `SSL_CERT_FILE`, which replaces them as it does for OpenSSL (and so for curl, git
//! and Python): a private CA, or a company proxy that re-signs traffic. Verification itself
//! is never turned off.

use std::path::Path;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The environment variable naming a PEM bundle of trusted roots.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// The roots `SSL_CERT_FILE` names, or `None` when it is unset or empty (the built-in
/// roots apply). A file that cannot be read or holds no certificate is an error, never a
/// silent fallback.
pub fn from_env() -> Result<Option<Vec<CertificateDer<'static>>>, String> {
    match std::env::var_os(SSL_CERT_FILE) {
        Some(path) if !path.is_empty() => read(Path::new(&path)).map(Some),
        _ => Ok(None),
    }
}

fn read(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let fail = |e: &dyn std::fmt::Display| format!("{SSL_CERT_FILE}={shown}: {e}");
    let pem = std::fs::read(path).map_err(|e| fail(&e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(&e))?;
    if certs.is_empty() {
        return Err(fail(
            &"holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
        ));
    }
    Ok(certs)
}

/// The rustls root store: `roots` (from [`from_env`]), or the webpki roots.
pub fn root_store(roots: Option<&[CertificateDer<'static>]>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Some(certs) => {
            for cert in certs {
                store
                    .add(cert.clone())
                    .map_err(|e| format!("{SSL_CERT_FILE}: {e}"))?;
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(store)
}

/// `roots` (from [`from_env`]) as reqwest takes them, for `trust!`.
pub fn for_reqwest(
    roots: Option<&[CertificateDer<'static>]>,
) -> Result<Option<Vec<reqwest::Certificate>>, String> {
    roots
        .map(|certs| {
            certs
                .iter()
                .map(|c| {
                    reqwest::Certificate::from_der(c).map_err(|e| format!("{SSL_CERT_FILE}: {e}"))
                })
                .collect()
        })
        .transpose()
}

/// Makes a reqwest client builder, async or blocking (the same methods), trust `roots`
/// (from [`for_reqwest`]) instead of the built-in roots; `None` leaves it as it is.
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
