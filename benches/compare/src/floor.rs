//! The floor: the cheapest responder on monoio (io_uring) that wrk accepts, the measure of
//! what a request costs before any HTTP server does its work. Per connection, one read
//! buffer; per read, it counts the request ends (`\r\n\r\n`) in what arrived and writes one
//! canned answer for each, all in one write. No parsing, no date, no routing, no limits,
//! no timeouts: nothing a real server could leave out, which is the point of a floor.
//!
//! It only answers bodiless GETs correctly (what wrk and the callgrind load send). A
//! request whose line starts `GET /json` gets the `/json` answer, every other the
//! `/plaintext` one, with the same bodies and content types as percore's demo routes.

use std::net::SocketAddr;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

const PLAINTEXT: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nHello, World!";
const JSON: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 27\r\n\r\n{\"message\":\"Hello, World!\"}";
const END: &[u8] = b"\r\n\r\n";
const READ_BUF: usize = 4096;

/// Serve the floor on `127.0.0.1:port` with one monoio executor per thread, each with its
/// own `SO_REUSEPORT` listener, until killed.
pub fn serve(port: u16, threads: usize) -> std::io::Result<()> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut handles = Vec::new();
    for _ in 0..threads.max(1) {
        let listener = listen(addr)?;
        handles.push(std::thread::spawn(move || {
            // The completion mode percore's executors use (src/runtime/monoio.rs,
            // `uring_runtime`), where the kernel has it: a floor that is dearer by its ring's
            // setup is no floor.
            let mut urb = io_uring::IoUring::builder();
            urb.setup_coop_taskrun();
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .uring_builder(urb)
                .enable_timer()
                .build()
                .or_else(|_| monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().enable_timer().build())
                .expect("io_uring runtime");
            rt.block_on(accept_loop(listener));
        }));
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

async fn accept_loop(listener: std::net::TcpListener) {
    let listener = TcpListener::from_std(listener).expect("monoio listener");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                monoio::spawn(serve_conn(stream));
            }
            Err(_) => monoio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

async fn serve_conn(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let ends = memchr::memmem::Finder::new(END);
    let mut rbuf = Vec::with_capacity(READ_BUF);
    let mut wbuf = Vec::with_capacity(READ_BUF);
    // Bytes of the request in progress that came in earlier reads (a request end can span
    // two reads, and its first line decides the answer).
    let mut carry: Vec<u8> = Vec::new();
    loop {
        rbuf.clear();
        let (res, buf) = stream.read(rbuf).await;
        rbuf = buf;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !carry.is_empty() {
            carry.extend_from_slice(&rbuf);
        }
        let data: &[u8] = if carry.is_empty() { &rbuf } else { &carry };
        let mut start = 0;
        for at in ends.find_iter(data) {
            let answer = if data[start..].starts_with(b"GET /json") { JSON } else { PLAINTEXT };
            wbuf.extend_from_slice(answer);
            start = at + END.len();
        }
        if carry.is_empty() {
            carry.extend_from_slice(&rbuf[start..]);
        } else {
            carry.drain(..start);
        }
        if wbuf.is_empty() {
            continue;
        }
        let (res, buf) = stream.write_all(wbuf).await;
        wbuf = buf;
        wbuf.clear();
        if res.is_err() {
            return;
        }
    }
}
