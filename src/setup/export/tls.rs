//! TLS material from the environment: `OTEL_EXPORTER_OTLP_CERTIFICATE` (the CA
//! bundle that verifies the collector), `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`
//! and `OTEL_EXPORTER_OTLP_CLIENT_KEY` (mutual TLS), each also per signal
//! (`OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, …; the signal's variable wins).
//!
//! Files are read and checked when the pipeline is built, so a missing file, a
//! file without a PEM certificate or key, or half a client identity is one clear
//! error naming the variable and the path (the signal is then off), not a
//! handshake failure later. With no CA bundle, the platform's roots are trusted;
//! with one, only that bundle (as the OpenTelemetry SDKs of other languages do).

use std::path::{Path, PathBuf};

use super::target::Signal;

/// The generic variables' suffixes.
const CA: &str = "CERTIFICATE";
const CLIENT_CERT: &str = "CLIENT_CERTIFICATE";
const CLIENT_KEY: &str = "CLIENT_KEY";

/// A TLS file that cannot be used. Every variant names the variable and the path.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFileError {
    /// The file cannot be read.
    #[error("{var}={path:?} cannot be read ({source})")]
    Unreadable {
        /// The variable.
        var: String,
        /// The path it gives.
        path: PathBuf,
        /// Why.
        source: std::sync::Arc<std::io::Error>,
    },
    /// The file holds no PEM certificate.
    #[error("{var}={path:?} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate {
        /// The variable.
        var: String,
        /// The path it gives.
        path: PathBuf,
    },
    /// The file holds no PEM private key.
    #[error("{var}={path:?} holds no PEM private key (expected -----BEGIN PRIVATE KEY----- or an RSA/EC key)")]
    NoKey {
        /// The variable.
        var: String,
        /// The path it gives.
        path: PathBuf,
    },
    /// Only one half of the client identity is configured.
    #[error("{set} is set but {missing} is not: mutual TLS needs both the client certificate and its key")]
    HalfIdentity {
        /// The variable that is set.
        set: String,
        /// The one that is missing.
        missing: String,
    },
}

/// A variable and the file it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsVar {
    /// The variable (the signal's own or the generic one).
    pub var: String,
    /// The path.
    pub path: PathBuf,
}

/// The TLS files configured for one signal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsVars {
    /// The CA bundle.
    pub ca: Option<TlsVar>,
    /// The client certificate.
    pub client_cert: Option<TlsVar>,
    /// The client key.
    pub client_key: Option<TlsVar>,
}

impl TlsVars {
    /// Whether any TLS file is configured.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }

    /// The variable names set, for messages.
    pub fn names(&self) -> Vec<&str> {
        [&self.ca, &self.client_cert, &self.client_key]
            .into_iter()
            .flatten()
            .map(|v| v.var.as_str())
            .collect()
    }
}

/// The variables for `signal`: its own first, else the generic ones.
pub fn tls_vars(signal: Signal, lookup: &dyn Fn(&str) -> Option<String>) -> TlsVars {
    let pick = |suffix: &str| {
        let own = signal.var(suffix);
        let generic = format!("OTEL_EXPORTER_OTLP_{suffix}");
        [own, generic].into_iter().find_map(|var| {
            let v = lookup(&var)?;
            let v = v.trim();
            (!v.is_empty()).then(|| TlsVar {
                var,
                path: PathBuf::from(v),
            })
        })
    };
    TlsVars {
        ca: pick(CA),
        client_cert: pick(CLIENT_CERT),
        client_key: pick(CLIENT_KEY),
    }
}

/// Checked TLS material: PEM bytes ready for either transport. Its `Debug`
/// shows no key material.
#[derive(Clone, Default)]
pub struct TlsMaterial {
    /// The CA bundle (PEM), when one is configured.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate chain and key (PEM), for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca", &self.ca_pem.is_some())
            .field("client_identity", &self.identity.is_some())
            .finish()
    }
}

/// Reads and checks the files `vars` name (`read` reads a file: `std::fs::read`
/// outside tests).
pub fn load(
    vars: &TlsVars,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<TlsMaterial, TlsFileError> {
    let read_var = |v: &TlsVar| {
        read(&v.path).map_err(|source| TlsFileError::Unreadable {
            var: v.var.clone(),
            path: v.path.clone(),
            source: std::sync::Arc::new(source),
        })
    };
    let certs = |v: &TlsVar, pem: &[u8]| {
        if has_certificate(pem) {
            Ok(())
        } else {
            Err(TlsFileError::NoCertificate {
                var: v.var.clone(),
                path: v.path.clone(),
            })
        }
    };
    let ca_pem = match &vars.ca {
        Some(v) => {
            let pem = read_var(v)?;
            certs(v, &pem)?;
            Some(pem)
        }
        None => None,
    };
    let identity = match (&vars.client_cert, &vars.client_key) {
        (Some(c), Some(k)) => {
            let cert = read_var(c)?;
            certs(c, &cert)?;
            let key = read_var(k)?;
            if !has_key(&key) {
                return Err(TlsFileError::NoKey {
                    var: k.var.clone(),
                    path: k.path.clone(),
                });
            }
            Some((cert, key))
        }
        (Some(c), None) => {
            return Err(TlsFileError::HalfIdentity {
                set: c.var.clone(),
                missing: c.var.replace(CLIENT_CERT, CLIENT_KEY),
            })
        }
        (None, Some(k)) => {
            return Err(TlsFileError::HalfIdentity {
                set: k.var.clone(),
                missing: k.var.replace(CLIENT_KEY, CLIENT_CERT),
            })
        }
        (None, None) => None,
    };
    Ok(TlsMaterial { ca_pem, identity })
}

/// Whether `pem` holds a PEM certificate.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
fn has_certificate(pem: &[u8]) -> bool {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem).any(|c| c.is_ok())
}

/// Whether `pem` holds a PEM private key (PKCS#8, PKCS#1 or SEC1).
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
fn has_key(pem: &[u8]) -> bool {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::PrivateKeyDer::from_pem_slice(pem).is_ok()
}

/// Without OTLP compiled in nothing uses the files: a light check.
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
fn has_certificate(pem: &[u8]) -> bool {
    String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----")
}

/// Without OTLP compiled in nothing uses the files: a light check.
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
fn has_key(pem: &[u8]) -> bool {
    String::from_utf8_lossy(pem).contains("PRIVATE KEY-----")
}

/// The TLS material for `signal` from the process environment.
pub(crate) fn from_env(signal: Signal) -> (TlsVars, Result<TlsMaterial, TlsFileError>) {
    let vars = tls_vars(signal, &|v| std::env::var(v).ok());
    let material = load(&vars, &|p| std::fs::read(p));
    (vars, material)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";

    fn files(path: &Path) -> std::io::Result<Vec<u8>> {
        match path.to_str() {
            Some("/ca.pem") | Some("/client.pem") => Ok(CERT.as_bytes().to_vec()),
            Some("/client.key") => Ok(KEY.as_bytes().to_vec()),
            Some("/garbage") => Ok(b"hello".to_vec()),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "No such file or directory (os error 2)",
            )),
        }
    }

    fn vars(signal: Signal, pairs: &[(&str, &str)]) -> TlsVars {
        tls_vars(signal, &super::super::test_env(pairs))
    }

    #[test]
    fn the_signal_variable_wins_over_the_generic_one() {
        let v = vars(
            Signal::Logs,
            &[
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/generic.pem"),
                ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "/ca.pem"),
                ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/client.key"),
            ],
        );
        assert_eq!(
            v.ca,
            Some(TlsVar {
                var: "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE".into(),
                path: "/ca.pem".into()
            })
        );
        assert!(
            v.client_key.is_none(),
            "another signal's key does not apply"
        );
        let m = load(&v, &files).unwrap();
        assert!(m.ca_pem.is_some() && m.identity.is_none());
    }

    #[test]
    fn bad_files_name_the_variable_and_the_path() {
        let err = |pairs: &[(&str, &str)]| {
            load(&vars(Signal::Traces, pairs), &files)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/missing.pem")]),
            "OTEL_EXPORTER_OTLP_CERTIFICATE=\"/missing.pem\" cannot be read \
             (No such file or directory (os error 2))"
        );
        assert_eq!(
            err(&[("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/garbage")]),
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE=\"/garbage\" holds no PEM certificate \
             (expected -----BEGIN CERTIFICATE-----)"
        );
        assert_eq!(
            err(&[
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/client.pem"),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/garbage"),
            ]),
            "OTEL_EXPORTER_OTLP_CLIENT_KEY=\"/garbage\" holds no PEM private key \
             (expected -----BEGIN PRIVATE KEY----- or an RSA/EC key)"
        );
        assert_eq!(
            err(&[("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/client.pem")]),
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE is set but OTEL_EXPORTER_OTLP_CLIENT_KEY \
             is not: mutual TLS needs both the client certificate and its key"
        );
    }

    #[test]
    fn a_full_identity_loads_and_debug_shows_no_key() {
        let m = load(
            &vars(
                Signal::Metrics,
                &[
                    ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/client.pem"),
                    ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/client.key"),
                ],
            ),
            &files,
        )
        .unwrap();
        assert!(m.identity.is_some());
        let shown = format!("{m:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }
}
