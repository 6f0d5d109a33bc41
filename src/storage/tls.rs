//! TLS to a storage server, pinned by the SPKI hash of its NURL.
//!
//! A storage server's certificate is self-signed, its names and dates mean
//! nothing (`http-storage-node-protocol.rst`, "Server Identity": clients
//! ignore them); what identifies the server is the SHA-256 of the
//! certificate's SubjectPublicKeyInfo, which the NURL carries. So the
//! verifier accepts exactly the certificate whose SPKI hash is the NURL's,
//! and still checks the handshake signature with the crypto provider: that
//! proves the server holds the private key of that public key.
//!
//! ureq has no hook for a custom rustls verifier, so the TLS layer is a
//! small ureq connector (its `unversioned` transport API) modelled on
//! ureq's own `RustlsConnector`, with our `ClientConfig`.

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport, TransportAdapter,
};

use crate::chk::spki::{spki_hash, spki_of_certificate};

/// The message of the TLS error a wrong pin gives (the error names the
/// server, this says why).
pub(crate) const PIN_MISMATCH: &str =
    "the server's certificate does not match the NURL's SPKI hash";

/// Accepts exactly the certificate whose SPKI hash is `pin`.
#[derive(Debug)]
pub(crate) struct PinnedVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
}

/// Why a certificate is refused (carried in rustls' `OtherError`).
#[derive(Debug)]
struct PinMismatch;

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(PIN_MISMATCH)
    }
}

impl std::error::Error for PinMismatch {}

impl PinnedVerifier {
    /// A verifier for the SPKI hash `pin` (as in the NURL).
    pub(crate) fn new(pin: &str) -> PinnedVerifier {
        PinnedVerifier {
            pin: pin.to_owned(),
            provider: provider(),
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Names, dates and issuers are ignored on purpose (see the module doc).
        match spki_hash(end_entity.as_ref()) {
            Some(hash) if hash == self.pin => Ok(ServerCertVerified::assertion()),
            _ => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch))),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Never reached: the configuration offers TLS 1.3 only (see
        // `pinned_config`). Refuse rather than skip the check.
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Tahoe's certificates are X.509 v1, which webpki's certificate
        // parser refuses (UnsupportedCertVersion); the signature is checked
        // against the certificate's public key (its SPKI, the pinned one).
        let spki = spki_of_certificate(cert.as_ref()).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki),
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The crypto provider: ring, as for the gateway's HTTPS (the crate builds
/// rustls with ring only). rustls 0.23.48 deprecates ring's default provider
/// for lacking post-quantum key exchange; Tahoe's servers offer none either.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS error in words: a pin mismatch says so plainly (rustls shows
/// other errors in its Debug form).
pub(crate) fn tls_message(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
            if other.0.is::<PinMismatch>() =>
        {
            PIN_MISMATCH.to_owned()
        }
        e => e.to_string(),
    }
}

/// The rustls client configuration pinned to `pin`.
pub(crate) fn pinned_config(pin: &str) -> Result<Arc<ClientConfig>, rustls::Error> {
    let config = ClientConfig::builder_with_provider(provider())
        // TLS 1.3 only: its handshake signature can be checked against the
        // raw SPKI (rustls has no such check for TLS 1.2), and Tahoe's
        // servers (Twisted on OpenSSL) speak it.
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(pin)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A ureq connector that wraps the TCP transport in TLS with a pinned
/// configuration. Plain `http://` is refused: storage servers speak HTTPS.
#[derive(Debug)]
pub(crate) struct PinnedConnector {
    config: Arc<ClientConfig>,
}

impl PinnedConnector {
    /// A connector for one server's pin.
    pub(crate) fn new(config: Arc<ClientConfig>) -> PinnedConnector {
        PinnedConnector { config }
    }
}

impl<In: Transport> Connector<In> for PinnedConnector {
    type Out = PinnedTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Err(ureq::Error::ConnectionFailed);
        };
        if !details.needs_tls() {
            return Err(ureq::Error::Tls(
                "storage servers are reached over HTTPS only",
            ));
        }
        let host = details
            .uri
            .host()
            .ok_or(ureq::Error::Tls("no host to connect to"))?;
        // `Uri::host` keeps an IPv6 address's brackets; ServerName wants it bare.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_owned())
            .map_err(|_| ureq::Error::Tls("invalid server name"))?;
        let mut conn = ClientConnection::new(self.config.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(PinnedTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        }))
    }
}

/// The TLS transport of a [`PinnedConnector`].
pub(crate) struct PinnedTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for PinnedTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedTransport").finish_non_exhaustive()
    }
}

impl Transport for PinnedTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["ignored.example".to_string()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn accepts_exactly_the_pinned_certificate_whatever_its_name() {
        let der = cert();
        let pin = spki_hash(&der).unwrap();
        let verifier = PinnedVerifier::new(&pin);
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let cd = CertificateDer::from(der.as_slice());
        assert!(
            verifier
                .verify_server_cert(&cd, &[], &name, &[], UnixTime::now())
                .is_ok()
        );
        let other = cert();
        let err = verifier
            .verify_server_cert(
                &CertificateDer::from(other.as_slice()),
                &[],
                &name,
                &[],
                UnixTime::now(),
            )
            .unwrap_err();
        assert_eq!(tls_message(&err), PIN_MISMATCH);
        // Garbage is refused too, without a panic.
        assert!(
            verifier
                .verify_server_cert(
                    &CertificateDer::from(&b"\x30\x03junk"[..]),
                    &[],
                    &name,
                    &[],
                    UnixTime::now()
                )
                .is_err()
        );
        assert!(!verifier.supported_verify_schemes().is_empty());
    }
}
