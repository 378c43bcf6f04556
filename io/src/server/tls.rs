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

/// The subject's common name (CN) of a DER certificate, as the `tls` authentication method
/// takes the principal from it; `None` when it has none (or the DER is not a certificate:
/// rustls verified it, so that does not happen in practice).
///
/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serial,
/// signature, issuer Name, validity, subject Name, ... }, ... }; Name ::= SEQUENCE OF SET OF
/// SEQUENCE { OID, value }. Only what leads to the CN is read.
pub(crate) fn subject_common_name(der: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let (_, cert, _) = tlv(der)?;
    let (_, mut tbs, _) = tlv(cert)?;
    let mut fields = Vec::new();
    while !tbs.is_empty() {
        let (tag, value, rest) = tlv(tbs)?;
        fields.push((tag, value));
        tbs = rest;
    }
    // Without the explicit version ([0], tag 0xA0) the subject is the fifth field.
    let skip = usize::from(fields.first()?.0 == 0xA0);
    let &(tag, mut name) = fields.get(skip + 4)?;
    if tag != SEQUENCE {
        return None;
    }
    while !name.is_empty() {
        let (tag, mut set, rest) = tlv(name)?;
        name = rest;
        if tag != SET {
            return None;
        }
        while !set.is_empty() {
            let (_, attribute, rest) = tlv(set)?;
            set = rest;
            let (tag, oid, value) = tlv(attribute)?;
            if tag == OID && oid == CN {
                // UTF8String, PrintableString, IA5String, ... : the bytes are the text.
                let (_, text, _) = tlv(value)?;
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

/// One DER tag-length-value: (tag, value, the bytes after it).
fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (value, after) = rest.split_at(len);
    Some((tag, value, after))
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

    fn cert_with(names: &[(rcgen::DnType, &str)], explicit_version: bool) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in names {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let der = params.self_signed(&key).unwrap().der().to_vec();
        if explicit_version {
            return der;
        }
        // The same certificate without its [0] version field (a v1 certificate's shape).
        let (_, cert, _) = tlv(&der).unwrap();
        let (_, tbs, after_tbs) = tlv(cert).unwrap();
        let (_, _, without_version) = tlv(tbs).unwrap();
        let wrap = |tag: u8, body: &[u8]| {
            let mut out = vec![tag, 0x82];
            out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
            out.extend_from_slice(body);
            out
        };
        let mut body = wrap(0x30, without_version);
        body.extend_from_slice(after_tbs);
        wrap(0x30, &body)
    }

    #[test]
    fn the_subject_common_name_is_read_from_the_certificate() {
        use rcgen::DnType;
        let check = |der: &[u8], expect: Option<&str>| {
            assert_eq!(subject_common_name(der).as_deref(), expect);
        };
        check(
            &cert_with(&[(DnType::CommonName, "alice")], true),
            Some("alice"),
        );
        check(
            &cert_with(&[(DnType::CommonName, "alice")], false),
            Some("alice"),
        );
        check(
            &cert_with(
                &[
                    (DnType::CountryName, "DE"),
                    (DnType::OrganizationName, "Org"),
                    (DnType::CommonName, "bob ü"),
                ],
                true,
            ),
            Some("bob ü"),
        );
        check(&cert_with(&[(DnType::OrganizationName, "Org")], true), None);
        check(&cert_with(&[], true), None);
        check(b"", None);
        check(b"not DER at all", None);
        let der = cert_with(&[(DnType::CommonName, "alice")], true);
        for cut in [1, 2, 10, der.len() / 2, der.len() - 1] {
            // Truncated: never a panic, and never a name read past the end.
            let _ = subject_common_name(&der[..cut]);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_parsed_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = subject_common_name(&bytes);
        }
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
