//! TLS settings (`--certfile`, `--keyfile`, `--ca-certs`, `--cert-reqs`, `--tls-min-version`)
//! and the rustls configuration built from them.
//!
//! Loading reads and checks everything a handshake will need (the chain, a key that matches
//! it, the client CAs), so a bad file is refused at start, by `check-config`, or by a reload
//! (which keeps the configuration in force) rather than failing handshakes later.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::{default_provider, Ticketer};
use rustls::server::{NoServerSessionStorage, ProducesTickets, WebPkiClientVerifier};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// `--cert-reqs`: whether clients must present a certificate signed by `--ca-certs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertReqs {
    /// No client certificate is asked for.
    #[default]
    None,
    /// Asked for; a client without one is served, a client with a bad one is refused.
    Optional,
    /// A client without a valid certificate is refused in the handshake.
    Required,
}

impl CertReqs {
    pub fn parse(s: &str) -> Result<CertReqs, String> {
        // gunicorn spells them 0, 1, 2 (Python's ssl.CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED).
        match s.to_ascii_lowercase().as_str() {
            "none" | "0" => Ok(CertReqs::None),
            "optional" | "1" => Ok(CertReqs::Optional),
            "required" | "2" => Ok(CertReqs::Required),
            _ => Err(format!("unknown --cert-reqs {s:?} (none, optional or required)")),
        }
    }
}

/// `--tls-min-version`: the oldest protocol version accepted. TLS 1.0 and 1.1 are never
/// offered (rustls does not implement them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    #[default]
    V1_2,
    V1_3,
}

impl TlsVersion {
    pub fn parse(s: &str) -> Result<TlsVersion, String> {
        match s.trim_start_matches("TLSv").trim_start_matches("tls") {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            "1.0" | "1.1" => {
                Err(format!("--tls-min-version {s}: TLS 1.0 and 1.1 are not supported (1.2 or 1.3)"))
            }
            _ => Err(format!("unknown --tls-min-version {s:?} (1.2 or 1.3)")),
        }
    }
}

/// Where the certificates are and what is asked of clients: plain data, compared on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM: the server certificate first, then its intermediates (the full chain).
    pub certfile: PathBuf,
    /// PEM: the private key (RSA, ECDSA or Ed25519; PKCS#8, PKCS#1 or SEC1).
    pub keyfile: PathBuf,
    /// PEM: the CAs that sign client certificates (mutual TLS).
    pub ca_certs: Option<PathBuf>,
    pub cert_reqs: CertReqs,
    pub min_version: TlsVersion,
}

impl TlsSettings {
    pub fn new(certfile: impl Into<PathBuf>, keyfile: impl Into<PathBuf>) -> TlsSettings {
        TlsSettings {
            certfile: certfile.into(),
            keyfile: keyfile.into(),
            ca_certs: None,
            cert_reqs: CertReqs::None,
            min_version: TlsVersion::V1_2,
        }
    }
}

/// Why TLS cannot be set up from the settings.
#[derive(Debug)]
pub enum TlsError {
    /// A file cannot be read.
    Read { flag: &'static str, path: PathBuf, source: io::Error },
    /// A file holds no usable PEM block of the kind it should.
    Empty { flag: &'static str, path: PathBuf, wanted: &'static str },
    /// A PEM block is malformed.
    Pem { flag: &'static str, path: PathBuf, detail: String },
    /// The key is not the certificate's (or rustls cannot use it).
    Key { certfile: PathBuf, keyfile: PathBuf, detail: String },
    /// A CA certificate in `--ca-certs` is unusable.
    CaCerts { path: PathBuf, detail: String },
    /// `--ca-certs` and `--cert-reqs` contradict each other.
    ClientAuth(&'static str),
    /// The session-ticket keys cannot be made.
    Tickets(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { flag, path, source } => {
                write!(f, "{flag} {}: cannot read: {source}", path.display())
            }
            TlsError::Empty { flag, path, wanted } => {
                write!(f, "{flag} {}: no {wanted} found (a PEM file is expected)", path.display())
            }
            TlsError::Pem { flag, path, detail } => write!(f, "{flag} {}: bad PEM: {detail}", path.display()),
            TlsError::Key { certfile, keyfile, detail } => write!(
                f,
                "--keyfile {} does not go with --certfile {}: {detail}",
                keyfile.display(),
                certfile.display()
            ),
            TlsError::CaCerts { path, detail } => write!(f, "--ca-certs {}: {detail}", path.display()),
            TlsError::ClientAuth(why) => f.write_str(why),
            TlsError::Tickets(e) => write!(f, "cannot make session-ticket keys: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// A loaded TLS configuration, shared by every executor: rustls's server configuration,
/// and the session-ticket keys that every later configuration (after a reload) keeps.
pub struct TlsConfig {
    settings: TlsSettings,
    server: Arc<rustls::ServerConfig>,
    ticketer: Arc<dyn ProducesTickets>,
    /// Who may connect: `--cert-reqs` and the CAs read from `--ca-certs`.
    client_auth: (CertReqs, Vec<CertificateDer<'static>>),
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Read and check the files, with new session-ticket keys.
    pub fn load(settings: &TlsSettings) -> Result<Arc<TlsConfig>, TlsError> {
        Self::build(settings, None)
    }

    /// Read and check the files again (SIGHUP), keeping this configuration's ticket keys,
    /// so sessions resume across the reload; unless who may connect changed (`--cert-reqs`,
    /// or the CAs in `--ca-certs`): rustls does not check a client again when it resumes, so
    /// a ticket from before would let in a client the new rules refuse.
    pub fn reload(&self, settings: &TlsSettings) -> Result<Arc<TlsConfig>, TlsError> {
        Self::build(settings, Some(self))
    }

    /// The settings this configuration was loaded from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    pub(crate) fn rustls(&self) -> &Arc<rustls::ServerConfig> {
        &self.server
    }

    /// `previous`: the configuration a reload replaces, whose ticket keys are kept while the
    /// client rules stay the same.
    fn build(settings: &TlsSettings, previous: Option<&TlsConfig>) -> Result<Arc<TlsConfig>, TlsError> {
        let chain = read_chain(&settings.certfile)?;
        let key = read_key(&settings.keyfile)?;
        let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
            TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::V1_3 => &[&rustls::version::TLS13],
        };
        let provider = Arc::new(default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .expect("the ring provider supports TLS 1.2 and 1.3");
        let mut cas = Vec::new();
        let builder = match (&settings.ca_certs, settings.cert_reqs) {
            (None, CertReqs::None) => builder.with_no_client_auth(),
            (Some(_), CertReqs::None) => return Err(TlsError::ClientAuth(
                "--ca-certs is given but --cert-reqs is none: say optional or required (or drop --ca-certs)",
            )),
            (None, _) => {
                return Err(TlsError::ClientAuth(
                    "--cert-reqs optional/required needs --ca-certs (the CAs that sign client certificates)",
                ))
            }
            (Some(path), reqs) => {
                let mut roots = RootCertStore::empty();
                cas = read_certs("--ca-certs", path)?;
                for ca in &cas {
                    roots
                        .add(ca.clone())
                        .map_err(|e| TlsError::CaCerts { path: path.clone(), detail: e.to_string() })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match reqs {
                    CertReqs::Optional => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::CaCerts { path: path.clone(), detail: e.to_string() })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server = builder.with_single_cert(chain, key).map_err(|e| TlsError::Key {
            certfile: settings.certfile.clone(),
            keyfile: settings.keyfile.clone(),
            detail: e.to_string(),
        })?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client_auth = (settings.cert_reqs, cas);
        let ticketer = match previous {
            Some(previous) if previous.client_auth == client_auth => previous.ticketer.clone(),
            reloaded => {
                if reloaded.is_some() {
                    tracing::info!(
                        "TLS client-certificate rules changed: sessions from before the reload will not resume"
                    );
                }
                // rustls's ticketer rotates its keys (every 6 hours, the previous key still
                // accepted); one ticketer for every executor makes a ticket valid on all of them.
                Ticketer::new().map_err(|e| TlsError::Tickets(e.to_string()))?
            }
        };
        server.ticketer = ticketer.clone();
        // TLS 1.3 resumes with tickets alone; a stateful session cache would be one lock
        // shared by every core, so TLS 1.2 clients resume only if they take tickets.
        server.session_storage = Arc::new(NoServerSessionStorage {});
        Ok(Arc::new(TlsConfig {
            settings: settings.clone(),
            server: Arc::new(server),
            ticketer,
            client_auth,
        }))
    }
}

fn read_file(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { flag, path: path.to_path_buf(), source })
}

fn read_certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { flag, path: path.to_path_buf(), detail: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { flag, path: path.to_path_buf(), wanted: "CERTIFICATE block" });
    }
    Ok(certs)
}

/// The certificate chain: the server's certificate first, as certbot's `fullchain.pem` has it.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    read_certs("--certfile", path)
}

/// The first private key in the file: `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1) or
/// `EC PRIVATE KEY` (SEC1).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file("--keyfile", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            flag: "--keyfile",
            path: path.to_path_buf(),
            wanted: "PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block",
        },
        e => TlsError::Pem { flag: "--keyfile", path: path.to_path_buf(), detail: e.to_string() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key as files in a fresh directory; the certificate
    /// also serves as a CA file.
    fn files(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("percore-tls-config-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, issued.cert.pem()).unwrap();
        std::fs::write(&key, issued.key_pair.serialize_pem()).unwrap();
        (dir, cert, key)
    }

    /// A reload keeps the ticket keys (sessions resume) while who may connect stays the
    /// same, and makes new ones when it changes: rustls does not check a resuming client's
    /// certificate again, so an old ticket would get past the new rules.
    #[test]
    fn a_reload_keeps_the_ticket_keys_unless_the_client_rules_change() {
        let (dir, cert, key) = files("tickets");
        let open = TlsSettings::new(&cert, &key);
        let first = TlsConfig::load(&open).unwrap();
        let same = first.reload(&open).unwrap();
        assert!(Arc::ptr_eq(&first.ticketer, &same.ticketer), "a certificate reload keeps them");

        let mut strict = open.clone();
        strict.ca_certs = Some(cert.clone());
        strict.cert_reqs = CertReqs::Required;
        let tightened = same.reload(&strict).unwrap();
        assert!(!Arc::ptr_eq(&same.ticketer, &tightened.ticketer), "client certificates now required");
        let again = tightened.reload(&strict).unwrap();
        assert!(Arc::ptr_eq(&tightened.ticketer, &again.ticketer));

        // Another CA in the same file: new keys too.
        let other = rcgen::generate_simple_self_signed(vec!["other".to_string()]).unwrap();
        std::fs::write(&cert, other.cert.pem()).unwrap();
        std::fs::write(&key, other.key_pair.serialize_pem()).unwrap();
        let new_ca = again.reload(&strict).unwrap();
        assert!(!Arc::ptr_eq(&again.ticketer, &new_ca.ticketer), "the CAs changed");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
