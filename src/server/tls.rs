//! TLS as etcd 3.4 does it, with rustls: the acceptor behind `https://` client and peer
//! listeners, and the dialer for `https://` URLs (peers, the leader's client port, oxctl).
//!
//! What it does not do: decide which listener or URL is TLS (the scheme does), or turn a
//! certificate into a user (auth reads [`PeerCn`]). It has no crypto of its own: rustls with
//! the ring provider does the handshakes, rcgen makes `--auto-tls` certificates, x509-parser
//! reads CNs. None of it exists in the simulation build.
//!
//! etcd's behaviour kept here (see shared/notes/etcd-auth-tls.md):
//! - `--trusted-ca-file` alone makes a listener require a client certificate chaining to it;
//!   `--client-cert-auth` adds the certificate's CN as the connection's identity.
//! - The certificate and key files are re-read when their modification time changes, checked
//!   at each handshake, so rotated certificates are served without a restart.
//! - Auto TLS: a self-signed certificate in `<data-dir>/fixtures/{client,peer}`, kept across
//!   restarts; whoever dials it skips verification (Go's InsecureSkipVerify).

use super::config::TlsInfo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How long an accepted connection gets to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted (and through their handshake) that wait for the server to take them.
const ACCEPTED_QUEUE_MAX: usize = 64;
/// TLS handshakes in progress on one listener; a connection beyond them is refused.
const HANDSHAKES_MAX: usize = 1024;
/// Pause after a failed `accept` (out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The CN of the client certificate a connection was verified with, when the listener has
/// `--client-cert-auth` (None otherwise, on plaintext listeners, and for a certificate
/// without a CN). Every request that came through a client listener carries it in its
/// extensions (tonic puts a connection's `Connected::ConnectInfo` there):
/// `request.extensions().get::<PeerCn>()` in a gRPC service, the same on an HTTP request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCn(pub Option<String>);

/// An accepted connection, plaintext or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, PeerCn),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s, _) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerCn;

    fn connect_info(&self) -> PeerCn {
        match self {
            Conn::Plain(_) => PeerCn(None),
            Conn::Tls(_, cn) => cn.clone(),
        }
    }
}

/// What a TLS listener does with each accepted connection.
pub struct Acceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    /// Read the client certificate's CN (`--client-cert-auth`).
    want_cn: bool,
    /// Refuse a client certificate whose CN is not this one (`--peer-cert-allowed-cn`).
    allowed_cn: Option<String>,
}

impl Acceptor {
    /// The acceptor for `info`'s side (`side` is "client" or "peer", for the logs); an
    /// auto TLS certificate must have been made already ([`with_auto_cert`]).
    pub fn new(info: &TlsInfo, side: &str) -> Result<Acceptor, String> {
        let (Some(cert), Some(key)) = (&info.cert_file, &info.key_file) else {
            return Err(format!(
                "{side} TLS needs --cert-file and --key-file (or --auto-tls)"
            ));
        };
        let provider = provider(&info.cipher_suites)?;
        let resolver = ReloadingCert::new(cert.clone(), key.clone(), provider.clone())?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = match &info.trusted_ca_file {
            Some(ca) => {
                let roots = roots(ca)?;
                let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                if let Some(crl) = &info.crl_file {
                    verifier = verifier.with_crls(crls(crl)?);
                }
                let verifier = verifier.build().map_err(|e| format!("{side} TLS: {e}"))?;
                let verifier = Arc::new(TrustedAsIs {
                    inner: verifier,
                    trusted: certs(ca)?,
                });
                builder
                    .with_client_cert_verifier(verifier)
                    .with_cert_resolver(Arc::new(resolver))
            }
            None => {
                if info.client_cert_auth {
                    tracing::warn!(
                        side,
                        "client certificate auth without a trusted CA file: client \
                         certificates are not asked for"
                    );
                }
                if info.crl_file.is_some() {
                    tracing::warn!(side, "a CRL without a trusted CA file is ignored");
                }
                builder
                    .with_no_client_auth()
                    .with_cert_resolver(Arc::new(resolver))
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Acceptor {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            want_cn: info.client_cert_auth && info.trusted_ca_file.is_some(),
            allowed_cn: info.allowed_cn.clone(),
        })
    }

    async fn accept(&self, tcp: TcpStream) -> Result<Conn, String> {
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp))
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let cn = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| common_name(cert));
        if let Some(allowed) = &self.allowed_cn
            && cn.as_deref() != Some(allowed.as_str())
        {
            return Err(format!(
                "CommonName authentication failed (allowed {allowed:?}, got {cn:?})"
            ));
        }
        let cn = if self.want_cn { cn } else { None };
        Ok(Conn::Tls(Box::new(tls), PeerCn(cn)))
    }
}

/// The connections accepted on `addr` (TCP_NODELAY on), through `tls`'s handshake when it is
/// given: each handshake runs in its own task, so a slow or failed one holds up no other
/// connection, and a failed one is logged (one warning) and dropped. With `plain_too` (the
/// same address listed as `http://` and `https://`, which etcd serves on one port), a
/// connection whose first byte does not open a TLS record is served in the clear. Ends when
/// the stream is dropped. `what` names the listener in the logs.
pub fn incoming(
    addr: SocketAddr,
    tls: Option<Arc<Acceptor>>,
    plain_too: bool,
    what: &'static str,
) -> io::Result<tokio_stream::wrappers::ReceiverStream<io::Result<Conn>>> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE_MAX);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "{what} listener cannot accept");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            match &tls {
                None => {
                    if tx.send(Ok(Conn::Plain(tcp))).await.is_err() {
                        return;
                    }
                }
                Some(acceptor) => {
                    let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                        tracing::warn!(
                            "rejected connection from {remote:?} on the {what} listener \
                             {addr}: {HANDSHAKES_MAX} TLS handshakes in progress"
                        );
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        if plain_too {
                            // A TLS connection opens with a handshake record (type 22).
                            let mut first = [0u8; 1];
                            let peeked =
                                tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await;
                            if matches!(peeked, Ok(Ok(1))) && first[0] != 22 {
                                drop(permit);
                                let _ = tx.send(Ok(Conn::Plain(tcp))).await;
                                return;
                            }
                        }
                        let accepted = acceptor.accept(tcp).await;
                        drop(permit);
                        match accepted {
                            Ok(conn) => {
                                let _ = tx.send(Ok(conn)).await;
                            }
                            Err(e) => tracing::warn!(
                                "rejected connection from {remote:?} on the {what} listener \
                                 {addr}: {e}"
                            ),
                        }
                    });
                }
            }
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// The certificate and key files, re-read when either's modification time changes (checked
/// at each handshake); a rotation that cannot be read keeps the previous pair.
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    stamp: (Option<SystemTime>, Option<SystemTime>),
    key: Arc<CertifiedKey>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ReloadingCert {
    fn new(cert: PathBuf, key: PathBuf, provider: Arc<CryptoProvider>) -> Result<Self, String> {
        let stamp = (modified(&cert), modified(&key));
        let loaded = certified_key(&cert, &key, &provider)?;
        Ok(ReloadingCert {
            cert,
            key,
            provider,
            current: Mutex::new(Loaded {
                stamp,
                key: Arc::new(loaded),
            }),
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let stamp = (modified(&self.cert), modified(&self.key));
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if stamp != current.stamp {
            match certified_key(&self.cert, &self.key, &self.provider) {
                Ok(k) => {
                    tracing::info!(cert = %self.cert.display(), "reloaded the TLS certificate");
                    current.key = Arc::new(k);
                    current.stamp = stamp;
                }
                // Perhaps half written: keep serving the old pair, try again next time.
                Err(e) => tracing::warn!(error = %e, "cannot reload the TLS certificate"),
            }
        }
        Some(current.key.clone())
    }
}

fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the key {}: {e}", key.display()))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| e.to_string())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: &dyn std::fmt::Display| format!("cannot read {}: {e}", path.display());
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if chain.is_empty() {
        return Err(bad(&"no certificate"));
    }
    Ok(chain)
}

/// Client certificate verification that also takes a certificate found as it is in the
/// trusted CA file, as Go's does: a self-signed certificate that is its own CA and is used as
/// the client's (etcd's tests run a member with one certificate for everything). webpki
/// refuses a CA certificate as an end entity; a certificate refused for that reason alone
/// is taken when it is byte for byte one the operator trusts and within its dates.
#[derive(Debug)]
struct TrustedAsIs {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    trusted: Vec<CertificateDer<'static>>,
}

impl rustls::server::danger::ClientCertVerifier for TrustedAsIs {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            // Only webpki's one objection (the certificate is a CA); its dates and every other
            // check still stand.
            Err(e)
                if format!("{e:?}").contains("CaUsedAsEndEntity")
                    && self
                        .trusted
                        .iter()
                        .any(|t| t.as_ref() == end_entity.as_ref())
                    && valid_at(end_entity, now) =>
            {
                Ok(rustls::server::danger::ClientCertVerified::assertion())
            }
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether `cert` is within its validity dates at `now`.
fn valid_at(cert: &CertificateDer<'_>, now: rustls_pki_types::UnixTime) -> bool {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return false;
    };
    let now = now.as_secs() as i64;
    let v = parsed.validity();
    v.not_before.timestamp() <= now && now <= v.not_after.timestamp()
}

fn roots(ca: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    Ok(Arc::new(roots))
}

/// A CRL file, PEM or DER (etcd takes both).
fn crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))
    } else {
        Ok(vec![CertificateRevocationListDer::from(bytes)])
    }
}

/// The CN of a DER certificate's subject.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// The `--cipher-suites` names etcd takes (Go's), with the name rustls gives the suite where
/// they differ. Suites rustls does not implement (CBC, RC4, 3DES, RSA key exchange) are
/// accepted and left off, as a client offering only those fails its handshake.
const GO_CIPHER_SUITES: [(&str, &str); 24] = [
    ("TLS_RSA_WITH_RC4_128_SHA", ""),
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", ""),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", ""),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", ""),
    ("TLS_RSA_WITH_AES_128_CBC_SHA256", ""),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", ""),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", ""),
    ("TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", ""),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", ""),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", ""),
    ("TLS_ECDHE_RSA_WITH_RC4_128_SHA", ""),
    ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", ""),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", ""),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", ""),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", ""),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", ""),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// rustls' ring provider, its TLS 1.2 suites cut down to `names` (Go's names, see
/// [`GO_CIPHER_SUITES`]) when given; a name Go does not know is refused with etcd's message.
/// TLS 1.3's suites are always on, as in Go.
fn provider(names: &[String]) -> Result<Arc<CryptoProvider>, String> {
    // ring rather than aws-lc-rs (rustls' default), which would add a large C build; ring's
    // provider is deprecated for lacking post-quantum key exchange, which the Go TLS of the
    // etcd 3.4 clients we serve does not offer either.
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    if !names.is_empty() {
        let mut wanted = Vec::new();
        for name in names {
            let Some((_, ours)) = GO_CIPHER_SUITES.iter().find(|(go, _)| go == name) else {
                return Err(format!("unexpected TLS cipher suite {name:?}"));
            };
            if ours.is_empty() {
                tracing::warn!(suite = %name, "TLS cipher suite not offered (not implemented)");
            } else {
                wanted.push(*ours);
            }
        }
        provider.cipher_suites.retain(|s| {
            s.version() == &rustls::version::TLS13
                || wanted.iter().any(|n| *n == format!("{:?}", s.suite()))
        });
    }
    Ok(Arc::new(provider))
}

/// `info` with a generated certificate when it asks for auto TLS and names none: a
/// self-signed one for `hosts` in `<data_dir>/fixtures/<side>`, made once and kept (etcd's
/// `SelfCert`).
pub fn with_auto_cert(
    info: &TlsInfo,
    side: &str,
    data_dir: &Path,
    hosts: &[String],
) -> Result<TlsInfo, String> {
    let mut info = info.clone();
    if !info.auto_tls {
        return Ok(info);
    }
    if info.cert_file.is_some() && info.key_file.is_some() {
        tracing::warn!(side, "ignoring auto TLS since certificates are given");
        return Ok(info);
    }
    let dir = data_dir.join("fixtures").join(side);
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if !(cert.exists() && key.exists()) {
        let bad = |e: &dyn std::fmt::Display| format!("cannot generate a certificate: {e}");
        std::fs::create_dir_all(&dir).map_err(|e| bad(&e))?;
        let mut sans: Vec<String> = hosts.to_vec();
        sans.sort();
        sans.dedup();
        let mut params = rcgen::CertificateParams::new(sans).map_err(|e| bad(&e))?;
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "etcd");
        let years = info.self_signed_cert_validity_years.max(1);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // Whole years from January 1st either side of now: validity is a coarse setting.
        let year = 1970 + (now / 31_556_952) as i32;
        params.not_before = rcgen::date_time_ymd(year, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + 1 + years as i32, 1, 1);
        let key_pair = rcgen::KeyPair::generate().map_err(|e| bad(&e))?;
        let generated = params.self_signed(&key_pair).map_err(|e| bad(&e))?;
        std::fs::write(&cert, generated.pem()).map_err(|e| bad(&e))?;
        write_private(&key, key_pair.serialize_pem()).map_err(|e| bad(&e))?;
        tracing::info!(cert = %cert.display(), "generated a self-signed {side} certificate");
    }
    info.cert_file = Some(cert);
    info.key_file = Some(key);
    Ok(info)
}

fn write_private(path: &Path, contents: String) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

/// What a dialer needs for `https://` URLs.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// CA certificates the server's must chain to.
    pub ca_file: Option<PathBuf>,
    /// The certificate and key to present, when the server asks for one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (auto TLS, `--insecure-skip-tls-verify`).
    pub skip_verify: bool,
}

impl ClientTls {
    /// How a member dials the side `info` describes, presenting its own certificate: the
    /// other's is verified against the trusted CA, except with auto TLS, and (when
    /// `trust_without_ca`) when there is no CA, as etcd's connections to its own client
    /// port are.
    pub fn for_member(info: &TlsInfo, trust_without_ca: bool) -> ClientTls {
        ClientTls {
            ca_file: info.trusted_ca_file.clone(),
            cert_file: info.cert_file.clone(),
            key_file: info.key_file.clone(),
            skip_verify: info.auto_tls || (trust_without_ca && info.trusted_ca_file.is_none()),
        }
    }

    /// The rustls configuration (ALPN h2).
    pub fn config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let provider = provider(&[])?;
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if self.skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SkipVerify(provider.clone())))
        } else {
            let roots = match &self.ca_file {
                Some(ca) => roots(ca)?,
                None => Arc::new(RootCertStore::empty()),
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("cannot read the key {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| e.to_string())?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Accepts any server certificate; the handshake's signatures are still checked.
#[derive(Debug)]
struct SkipVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Dials `uri` over TLS: a TCP connection to its host and port, then a handshake that checks
/// the certificate against the URI's host.
#[derive(Clone)]
struct Connector(Arc<rustls::ClientConfig>);

type Dialed = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = Dialed;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Dialed>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.0.clone();
        Box::pin(async move {
            let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
            let host = uri.host().ok_or_else(|| bad("no host in the URL"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host).map_err(|_| bad("a bad host name"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

/// A channel to `url` (TCP_NODELAY on, `connect_timeout` for the connection and handshake):
/// TLS with `tls` for `https://`, plaintext otherwise.
pub async fn dial(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
) -> Result<tonic::transport::Channel, String> {
    let secure = url.starts_with("https://");
    // The scheme goes as http: tonic must not try TLS of its own, the connector does it.
    let plain_url = match url.strip_prefix("https://") {
        Some(rest) => format!("http://{rest}"),
        None => url.to_string(),
    };
    let endpoint = tonic::transport::Endpoint::from_shared(plain_url)
        .map_err(|e| e.to_string())?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    if !secure {
        return endpoint.connect().await.map_err(|e| e.to_string());
    }
    let Some(tls) = tls else {
        return Err(format!("{url}: no TLS configuration for an https URL"));
    };
    endpoint
        .connect_with_connector(Connector(tls.clone()))
        .await
        .map_err(|e| error_chain(&e))
}

/// An error with its sources: tonic's "transport error" alone says nothing.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_suites_take_go_names() {
        let p = provider(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string()]).unwrap();
        assert!(
            p.cipher_suites
                .iter()
                .any(|s| format!("{:?}", s.suite()) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        );
        assert!(
            !p.cipher_suites
                .iter()
                .any(|s| format!("{:?}", s.suite()) == "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")
        );
        // Go's name for a suite rustls names with its hash.
        let p = provider(&["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305".to_string()]).unwrap();
        assert!(p.cipher_suites.iter().any(|s| {
            format!("{:?}", s.suite()) == "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
        }));
        // A suite Go knows and rustls lacks is taken and left off; a name Go does not
        // know is refused, as etcd refuses it.
        let p = provider(&["TLS_RSA_WITH_RC4_128_SHA".to_string()]).unwrap();
        assert!(
            p.cipher_suites
                .iter()
                .all(|s| s.version() == &rustls::version::TLS13)
        );
        assert_eq!(
            provider(&["TLS_NOPE".to_string()]).err(),
            Some("unexpected TLS cipher suite \"TLS_NOPE\"".to_string())
        );
    }

    #[test]
    fn auto_tls_makes_a_certificate_once() {
        let dir = std::env::temp_dir().join(format!("oxcd-auto-tls-{}", std::process::id()));
        let info = TlsInfo {
            auto_tls: true,
            ..TlsInfo::default()
        };
        let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
        let made = with_auto_cert(&info, "peer", &dir, &hosts).unwrap();
        let cert = made.cert_file.clone().unwrap();
        let first = std::fs::read(&cert).unwrap();
        let again = with_auto_cert(&info, "peer", &dir, &hosts).unwrap();
        assert_eq!(again, made);
        assert_eq!(std::fs::read(&cert).unwrap(), first);
        let provider = provider(&[]).unwrap();
        certified_key(&cert, made.key_file.as_ref().unwrap(), &provider).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
