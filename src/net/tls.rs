//! TLS with rustls: the client's trust (the system's store, SSL_CERT_FILE and
//! SSL_CERT_DIR, extra CAs), client certificates, the server's certificate,
//! which can be replaced while it listens, and TLS failures put into words.

use std::sync::{Arc, Mutex, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The TLS settings of a socket or server, as Python's `SslConfiguration` gives them.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// CA certificates to trust besides the system's (a client), or to check
    /// client certificates against (a server): PEM text or file paths.
    pub ca_certificates: Vec<String>,
    /// Our certificate chain and key: a client's for mutual TLS, a server's own.
    pub local_certificate: Option<String>,
    pub private_key: Option<String>,
    /// A client: verify the server (never off unless asked). A server:
    /// require and verify client certificates.
    pub peer_verify: bool,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// PEM text as is, anything else as the path of a PEM file.
fn pem(source: &str) -> Result<Vec<u8>, String> {
    if source.contains("-----BEGIN") {
        Ok(source.as_bytes().to_vec())
    } else {
        std::fs::read(source).map_err(|e| format!("cannot read {source}: {e}"))
    }
}

fn certificates(source: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(&pem(source)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM certificate in {}: {e}", short(source)))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", short(source)));
    }
    Ok(certs)
}

fn private_key(source: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(&pem(source)?)
        .map_err(|e| format!("invalid private key in {}: {e}", short(source)))
}

fn short(source: &str) -> &str {
    if source.contains("-----BEGIN") {
        "the PEM text"
    } else {
        source
    }
}

/// The system's trust store, read once per value of SSL_CERT_FILE and SSL_CERT_DIR.
fn system_roots() -> Arc<RootCertStore> {
    type Cache = Mutex<Option<((Option<String>, Option<String>), Arc<RootCertStore>)>>;
    static CACHE: Cache = Mutex::new(None);
    let key = (
        std::env::var("SSL_CERT_FILE").ok(),
        std::env::var("SSL_CERT_DIR").ok(),
    );
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((cached, roots)) = cache.as_ref() {
        if *cached == key {
            return Arc::clone(roots);
        }
    }
    let mut roots = RootCertStore::empty();
    // Unreadable entries are skipped: one bad file must not cost every other root.
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    let roots = Arc::new(roots);
    *cache = Some((key, Arc::clone(&roots)));
    roots
}

/// A client's TLS configuration.
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if options.peer_verify {
        let mut roots = (*system_roots()).clone();
        for source in &options.ca_certificates {
            for cert in certificates(source)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("invalid CA certificate: {e}"))?;
            }
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    };
    let config = match (&options.local_certificate, &options.private_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| format!("unusable client certificate: {e}"))?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err("a client certificate needs both local_certificate and private_key".into())
        }
    };
    Ok(Arc::new(config))
}

/// The verifier behind `ignore_ssl_errors()`: it accepts any certificate.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The server's certificate, replaceable while it listens: new handshakes
/// get the new one, open connections keep theirs.
#[derive(Debug)]
pub struct Certificate(RwLock<Arc<CertifiedKey>>);

impl Certificate {
    pub fn load(cert: &str, key: &str) -> Result<CertifiedKey, String> {
        CertifiedKey::from_der(
            certificates(cert)?,
            private_key(key)?,
            &ring::default_provider(),
        )
        .map_err(|e| format!("unusable certificate or key: {e}"))
    }

    pub fn replace(&self, key: CertifiedKey) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// A server's TLS configuration, and the handle that replaces its certificate.
pub fn server_config(
    cert: &str,
    key: &str,
    options: &TlsOptions,
) -> Result<(Arc<ServerConfig>, Arc<Certificate>), String> {
    let certificate = Arc::new(Certificate(RwLock::new(Arc::new(Certificate::load(
        cert, key,
    )?))));
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if options.peer_verify {
        let mut roots = RootCertStore::empty();
        for source in &options.ca_certificates {
            for cert in certificates(source)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("invalid CA certificate: {e}"))?;
            }
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| format!("cannot verify client certificates: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config =
        builder.with_cert_resolver(Arc::clone(&certificate) as Arc<dyn ResolvesServerCert>);
    Ok((Arc::new(config), certificate))
}

/// What a wss:// client whose server answers in plain text (or hangs up
/// on the ClientHello) tells the user.
pub const NOT_TLS: &str = "TLS handshake failed: the server does not speak TLS (is the URL ws://?)";

/// What a wss:// server says of a client that sent plain text (a ws:// URL).
pub const CLIENT_NOT_TLS: &str =
    "TLS handshake failed: the client does not speak TLS (a ws:// URL?)";

/// The TLS alert the peer sent, if that is what `error` is.
pub fn alert_of(error: &std::io::Error) -> Option<rustls::AlertDescription> {
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// A failed TLS handshake in words a person understands, for `error_string`
/// and `ssl_errors`; `server` when ours is the server's side, whose peer
/// `host` is a client.
pub fn describe(error: &std::io::Error, host: &str, server: bool) -> String {
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return format!("TLS handshake failed: {error}");
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate verify failed: the certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate verify failed: the certificate is not valid yet".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("certificate verify failed: host name mismatch: the certificate is not valid for {host}")
            }
            CertificateError::UnknownIssuer => {
                "certificate verify failed: unknown issuer: the certificate is not signed by a trusted CA".into()
            }
            CertificateError::BadSignature => "certificate verify failed: bad signature".into(),
            CertificateError::Revoked => "certificate verify failed: the certificate was revoked".into(),
            other => format!("certificate verify failed: {other:?}"),
        },
        // The first byte of a TLS record is its type (22 for a handshake);
        // a plain server's answer starts with "HTTP/" or some other text.
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            if server { CLIENT_NOT_TLS } else { NOT_TLS }.into()
        }
        rustls::Error::NoCertificatesPresented => "TLS handshake failed: no certificate was presented".into(),
        rustls::Error::AlertReceived(alert) => {
            format!("TLS handshake failed: the peer refused it ({alert:?})")
        }
        other => format!("TLS handshake failed: {other}"),
    }
}
