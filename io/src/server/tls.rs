//! TLS for listening endpoints: turns an `endpoint.tls` configuration into a rustls
//! [`ServerConfig`], with one clear error per file that is missing or holds no usable PEM.
//!
//! Why rustls directly and not monoio-rustls: monoio-rustls 0.4 (the release for monoio 0.2
//! and rustls 0.23) wraps the socket in a stream that owns a read buffer and a write buffer
//! for the connection's whole life, and hides the socket's readiness. The connection driver
//! waits for readiness and reads into a per-core buffer so that an idle connection holds no
//! buffer; it feeds rustls's sans-IO [`rustls::ServerConnection`] from that buffer instead
//! (see `stream.rs`), which keeps that invariant as far as rustls allows.
//!
//! What a TLS connection costs while idle (rustls 0.23, read from its source): the
//! `ServerConnection` itself (its size is printed by this module's test, about 1 KiB), the
//! record-layer keys, and rustls's own incoming-record buffer, which it shrinks back to
//! 4 KiB whenever it holds no partial record (up to one 16 KiB record plus header while a
//! record is arriving; 64 KiB while a handshake message is). The plaintext it decrypts is
//! taken by reference and handed on at once; what we encrypt is written out at once.
//!
//! Client certificates: when `ca_certificates` is configured, a client must present a
//! certificate that chains to one of them, or the handshake fails (Crossbar's behaviour:
//! Twisted's `verify=True` requires one). Without it no certificate is requested.
//!
//! What it does not do: OpenSSL cipher strings or DH parameter files (`check` refuses them:
//! rustls offers its own safe suites, ECDHE only), session tickets tuning, OCSP, SNI with
//! several certificates, reloading files while running.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::TlsConfig;

/// Why a TLS configuration could not be turned into a server configuration.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the kind needed.
    File {
        /// The configuration path of the key naming the file.
        key: String,
        /// The file.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the key, certificates or CA certificates together.
    Config {
        /// The configuration path of the `tls` object.
        path: String,
        /// rustls's reason.
        reason: String,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { key, file, reason } => {
                write!(f, "{key}: {}: {reason}", file.display())
            }
            Self::Config { path, reason } => write!(f, "{path}: {reason}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// Builds the rustls server configuration of one endpoint; `path` is the configuration
/// path of its `tls` object (e.g. `workers[0].transports[1].endpoint.tls`), for errors.
pub(crate) fn server_config(tls: &TlsConfig, path: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut chain = certificates(&tls.certificate, &format!("{path}.certificate"))?;
    for (i, file) in tls.chain_certificates.iter().enumerate() {
        chain.extend(certificates(
            file,
            &format!("{path}.chain_certificates[{i}]"),
        )?);
    }
    let key = private_key(&tls.key, &format!("{path}.key"))?;
    let config_error = |reason: String| TlsError::Config {
        path: path.to_owned(),
        reason,
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(e.to_string()))?;
    let builder = if tls.ca_certificates.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for (i, file) in tls.ca_certificates.iter().enumerate() {
            let key = format!("{path}.ca_certificates[{i}]");
            for cert in certificates(file, &key)? {
                roots.add(cert).map_err(|e| TlsError::File {
                    key: key.clone(),
                    file: file.clone(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| config_error(format!("client certificate verification: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| config_error(format!("key and certificate do not fit together: {e}")))?;
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; at least one.
fn certificates(file: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::File {
        key: key.to_owned(),
        file: file.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| error(pem_reason(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(error(
            "no PEM certificate (BEGIN CERTIFICATE) in the file".to_owned(),
        ));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(file: &Path, key: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(file).map_err(|e| TlsError::File {
        key: key.to_owned(),
        file: file.to_owned(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) in the file"
                    .to_owned()
            }
            other => pem_reason(&other),
        },
    })
}

fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => format!("cannot read: {io}"),
        Error::NoItemsFound => "no PEM item of the expected kind in the file".to_owned(),
        other => format!("not valid PEM: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named_with_their_configuration_key() {
        let dir = std::env::temp_dir().join(format!("switchyard-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not pem at all\n").unwrap();
        let check = |tls: TlsConfig, expect: &str| {
            let err = server_config(&tls, "t.tls").unwrap_err().to_string();
            assert!(err.contains(expect), "{err:?} lacks {expect:?}");
        };
        let missing = dir.join("missing.pem");
        check(
            TlsConfig {
                key: missing.clone(),
                certificate: missing.clone(),
                chain_certificates: Vec::new(),
                ca_certificates: Vec::new(),
            },
            "t.tls.certificate: ",
        );
        check(
            TlsConfig {
                key: missing.clone(),
                certificate: garbage.clone(),
                chain_certificates: Vec::new(),
                ca_certificates: Vec::new(),
            },
            "no PEM certificate",
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The figure ARCHITECTURE.md gives for a TLS connection's fixed state (printed with
    /// --nocapture); the bound keeps the document honest if rustls grows.
    #[test]
    fn connection_state_size() {
        let size = size_of::<rustls::ServerConnection>();
        println!("size_of::<rustls::ServerConnection>() = {size}");
        assert!(size <= 2048, "{size}");
    }
}
