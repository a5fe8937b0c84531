//! hyper 1.x over tokio-rustls on a tokio multi-thread runtime (`worker_threads` = cores,
//! one listener): the usual Rust HTTPS server, the reference of `compare tls`. The same
//! rustls (ring provider), ALPN `http/1.1` and stateless session tickets as percore, so
//! the handshakes compared are the same work.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| e.to_string())?;
    Ok(config)
}

/// Serve HTTPS until killed.
pub fn serve(port: u16, threads: usize, cert: &Path, key: &Path) -> Result<(), String> {
    crate::procfs::raise_nofile();
    let acceptor = TlsAcceptor::from(Arc::new(config(cert, key)?));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let std_listener = crate::hyper_ref::listener(addr, false).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = TcpListener::from_std(std_listener).expect("listener");
        eprintln!("hyper-mt-rustls ready on {addr} with {threads} worker threads");
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let _ = http1::Builder::new()
                    .pipeline_flush(true)
                    .serve_connection(TokioIo::new(tls), service_fn(crate::hyper_ref::handle))
                    .await;
            });
        }
    })
}
