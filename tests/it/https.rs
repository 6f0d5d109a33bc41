//! An `https://` gateway (issue 13, item 9): a TLS-terminating proxy, run
//! by the test in a thread, sits in front of the test grid's plain HTTP
//! gateway with a certificate from a test CA. Given that CA through
//! `http.ca_certs_files`, backup and restore work; without it the
//! certificate is refused with a clear error (exit 1).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;

/// A test CA's certificate (PEM) and a TLS server config for 127.0.0.1
/// signed by it.
fn test_ca_and_server() -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "lafs-backup test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let server_cert = server_params.signed_by(&server_key, &ca).unwrap();
    // The ring provider, as the client uses (issue 13); its post-quantum
    // deprecation note does not matter for a loopback test server.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .unwrap();
    (ca.pem(), Arc::new(config))
}

/// Starts the proxy on a free port of 127.0.0.1: a thread per connection
/// forwards the decrypted bytes to `upstream` (`host:port`) and back. Each
/// connection ends when either side closes it, on an error, or after 30 s
/// idle, so the threads end by themselves. Returns the proxy's port.
fn start_tls_proxy(config: Arc<rustls::ServerConfig>, upstream: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let config = Arc::clone(&config);
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let _ = forward(config, client, &upstream);
            });
        }
    });
    port
}

fn forward(
    config: Arc<rustls::ServerConfig>,
    client: TcpStream,
    upstream: &str,
) -> std::io::Result<()> {
    let tick = Some(Duration::from_millis(5));
    client.set_read_timeout(tick)?;
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(tick)?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, client);
    let mut buf = vec![0u8; 64 * 1024];
    let mut last = Instant::now();
    let idle = |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    while last.elapsed() < Duration::from_secs(30) {
        match tls.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                up.write_all(&buf[..n])?;
                last = Instant::now();
            }
            Err(e) if idle(&e) => {}
            Err(e) => return Err(e),
        }
        match up.read(&mut buf) {
            Ok(0) => {
                tls.conn.send_close_notify();
                return tls.flush();
            }
            Ok(n) => {
                tls.write_all(&buf[..n])?;
                tls.flush()?;
                last = Instant::now();
            }
            Err(e) if idle(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.txt"), b"over TLS\n").unwrap();
    std::fs::write(
        root.join("sub/big.bin"),
        common::pseudo_random_bytes(300_000, 13),
    )
    .unwrap();
}

#[test]
fn https_gateway_with_a_private_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("src");
    write_tree(&source);
    let (ca_pem, server) = test_ca_and_server();
    let ca_file = tmp.path().join("test-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let upstream = common::gateway_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let port = start_tls_proxy(server, upstream);
    let https = format!("https://127.0.0.1:{port}");

    // Without the CA: the certificate is refused, clearly, exit 1.
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let cfg = common::write_backup_config(&plain, &source, &https, common::QUICK_RETRY);
    let run = common::lafs().arg("-c").arg(&cfg).arg("backup").code(1);
    assert!(
        run.stderr.contains("TLS certificate") && run.stderr.contains("http.ca_certs_files"),
        "{}",
        run.stderr
    );

    // The CA through the system's store (SSL_CERT_FILE replaces it).
    common::lafs()
        .arg("-c")
        .arg(&cfg)
        .arg("backup")
        .env("SSL_CERT_FILE", &ca_file)
        .caps_on_stdout()
        .ok();

    // With the CA in http.ca_certs_files: backup, then restore through the
    // same proxy.
    let trusted = tmp.path().join("trusted");
    std::fs::create_dir(&trusted).unwrap();
    let extra = format!(
        "{}  ca_certs_files:\n    - '{}'\n",
        common::QUICK_RETRY,
        ca_file.display()
    );
    let cfg = common::write_backup_config(&trusted, &source, &https, &extra);
    let cap = common::backup_root_cap(&cfg);
    let target = tmp.path().join("restored");
    common::lafs()
        .arg("-c")
        .arg(&cfg)
        .arg("restore")
        .arg(&cap)
        .arg(&target)
        .known_cap(&cap)
        .ok();
    let diff = std::process::Command::new("diff")
        .arg("-r")
        .arg(&source)
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

#[test]
fn unreadable_or_empty_ca_files_are_config_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    for (file, why) in [
        (tmp.path().join("missing.pem"), "cannot read"),
        (empty, "holds no PEM certificate"),
    ] {
        let cfg = tmp.path().join("cfg.yaml");
        std::fs::write(
            &cfg,
            format!("http:\n  ca_certs_files: ['{}']\n", file.display()),
        )
        .unwrap();
        let run = common::lafs()
            .arg("-c")
            .arg(&cfg)
            .arg("dump-config")
            .code(2);
        assert!(
            run.stderr.contains("cfg.yaml:2")
                && run.stderr.contains("http.ca_certs_files")
                && run.stderr.contains(why)
                && run.stderr.contains(&file.display().to_string()),
            "{}",
            run.stderr
        );
    }
}
