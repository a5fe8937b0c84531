//! The hyper 1.x reference server, in two shapes:
//!
//! - `mt`: the usual Rust choice, one tokio multi-thread runtime (`worker_threads = N`) and
//!   one listener; connections are spread by tokio's work-stealing scheduler.
//! - `tpc`: thread-per-core like percore, N threads each with a `current_thread` runtime,
//!   pinned to its core, with its own `SO_REUSEPORT` listener.
//!
//! Both answer `/plaintext` and `/json` with the same bodies and headers as percore
//! (`content-type`, `content-length`, `date`), set `TCP_NODELAY`, and turn on hyper's
//! `pipeline_flush` so that pipelined responses leave in one write, as percore's do.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    MultiThread,
    ThreadPerCore,
}

pub(crate) async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, ctype, body): (StatusCode, &'static str, &'static [u8]) = match req.uri().path() {
        "/plaintext" => (StatusCode::OK, "text/plain", b"Hello, World!"),
        "/json" => (StatusCode::OK, "application/json", br#"{"message":"Hello, World!"}"#),
        _ => (StatusCode::NOT_FOUND, "text/plain", b"Not Found"),
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(resp)
}

async fn serve_conn(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = http1::Builder::new()
        .pipeline_flush(true)
        .serve_connection(TokioIo::new(stream), service_fn(handle))
        .await;
}

async fn accept_loop(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_conn(stream));
            }
            // EMFILE and friends: back off instead of spinning.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

pub(crate) fn listener(addr: SocketAddr, reuseport: bool) -> std::io::Result<StdListener> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuseport {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(2048)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn pin(cpu: usize) {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Serve until killed.
pub fn serve(mode: Mode, port: u16, threads: usize, cpus: &[usize]) -> std::io::Result<()> {
    crate::procfs::raise_nofile();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    match mode {
        Mode::MultiThread => {
            let std_listener = listener(addr, false)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let l = TcpListener::from_std(std_listener).expect("listener");
                eprintln!("hyper-mt ready on {addr} with {threads} worker threads");
                accept_loop(l).await
            });
            Ok(())
        }
        Mode::ThreadPerCore => {
            // Bind every listener of the group before serving, so the first connections
            // already spread over all of them.
            let listeners: Vec<StdListener> =
                (0..threads.max(1)).map(|_| listener(addr, true)).collect::<Result<_, _>>()?;
            let mut handles = Vec::new();
            for (i, l) in listeners.into_iter().enumerate() {
                let cpu = cpus.get(i % cpus.len().max(1)).copied();
                handles.push(std::thread::Builder::new().name(format!("hyper-tpc-{i}")).spawn(
                    move || {
                        if let Some(cpu) = cpu {
                            pin(cpu);
                        }
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("runtime");
                        rt.block_on(async move {
                            let l = TcpListener::from_std(l).expect("listener");
                            accept_loop(l).await
                        });
                    },
                )?);
            }
            eprintln!("hyper-tpc ready on {addr} with {threads} threads");
            for h in handles {
                let _ = h.join();
            }
            Ok(())
        }
    }
}
