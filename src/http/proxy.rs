//! Knowing the real client behind proxies, sans-IO:
//!
//! - the PROXY protocol header (v1 text, v2 binary) that load balancers such as the AWS NLB
//!   put before the first byte of a connection, parsed strictly;
//! - `X-Forwarded-For` / `-Proto` / `-Host` or RFC 7239 `Forwarded` (one family, chosen by
//!   `--forwarded-headers`), believed only when the peer is in `--forwarded-allow-ips`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `--proxy-protocol`: which PROXY header every connection must start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyProtocol {
    #[default]
    Off,
    V1,
    V2,
    /// Either version (each connection must still send one).
    Auto,
}

impl ProxyProtocol {
    pub fn parse(s: &str) -> Result<ProxyProtocol, String> {
        match s {
            "off" => Ok(ProxyProtocol::Off),
            "v1" => Ok(ProxyProtocol::V1),
            "v2" => Ok(ProxyProtocol::V2),
            "auto" => Ok(ProxyProtocol::Auto),
            _ => Err(format!("invalid PROXY protocol mode {s:?} (off, v1, v2 or auto)")),
        }
    }
}

/// Why a PROXY header was refused (the connection is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// Not the version this listener expects, or no PROXY header at all.
    Missing,
    Malformed,
}

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_MAX: usize = 107;
const V2_MAX: usize = 16 + 4096;

/// A parsed PROXY header: the original source, if it says one (`LOCAL` health checks and
/// `UNKNOWN` do not), and how many bytes it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    pub source: Option<SocketAddr>,
    pub len: usize,
}

/// Parse a PROXY header at the start of `buf`. `Ok(None)`: not complete yet.
pub fn parse_proxy_header(buf: &[u8], mode: ProxyProtocol) -> Result<Option<ProxyHeader>, ProxyError> {
    let is_v2 = prefix_matches(buf, V2_SIGNATURE);
    let is_v1 = prefix_matches(buf, b"PROXY ");
    match mode {
        ProxyProtocol::Off => Ok(Some(ProxyHeader { source: None, len: 0 })),
        ProxyProtocol::V1 if is_v1 => parse_v1(buf),
        ProxyProtocol::V2 if is_v2 => parse_v2(buf),
        ProxyProtocol::Auto if is_v2 && buf.len() >= 12 => parse_v2(buf),
        ProxyProtocol::Auto if is_v1 && buf.len() >= 6 => parse_v1(buf),
        // Both could still match (a prefix shorter than either signature).
        ProxyProtocol::Auto if is_v1 || is_v2 => Ok(None),
        _ => Err(ProxyError::Missing),
    }
}

/// Whether `buf` and `sig` agree on their common length.
fn prefix_matches(buf: &[u8], sig: &[u8]) -> bool {
    let n = buf.len().min(sig.len());
    buf[..n] == sig[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    if buf.len() < 6 {
        return Ok(None);
    }
    // The line is printable ASCII up to CRLF; a bare LF or a control byte ends it badly.
    if buf.iter().take(V1_MAX).take_while(|&&b| b != b'\r').any(|&b| !(b' '..=b'~').contains(&b)) {
        return Err(ProxyError::Malformed);
    }
    let Some(cr) = buf.iter().take(V1_MAX).position(|&b| b == b'\r') else {
        return if buf.len() >= V1_MAX { Err(ProxyError::Malformed) } else { Ok(None) };
    };
    if buf.len() < cr + 2 {
        return Ok(None);
    }
    if buf[cr + 1] != b'\n' {
        return Err(ProxyError::Malformed);
    }
    let line = std::str::from_utf8(&buf[6..cr]).map_err(|_| ProxyError::Malformed)?;
    let len = cr + 2;
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["UNKNOWN", ..] => Ok(Some(ProxyHeader { source: None, len })),
        [proto, src, dst, sport, dport] => {
            let (src, _dst): (IpAddr, IpAddr) = match *proto {
                "TCP4" => (
                    src.parse::<Ipv4Addr>().map_err(|_| ProxyError::Malformed)?.into(),
                    dst.parse::<Ipv4Addr>().map_err(|_| ProxyError::Malformed)?.into(),
                ),
                "TCP6" => (
                    src.parse::<Ipv6Addr>().map_err(|_| ProxyError::Malformed)?.into(),
                    dst.parse::<Ipv6Addr>().map_err(|_| ProxyError::Malformed)?.into(),
                ),
                _ => return Err(ProxyError::Malformed),
            };
            let sport = port(sport)?;
            port(dport)?;
            Ok(Some(ProxyHeader { source: Some(SocketAddr::new(src, sport)), len }))
        }
        _ => Err(ProxyError::Malformed),
    }
}

/// A decimal port without sign or leading zeros.
fn port(s: &str) -> Result<u16, ProxyError> {
    if s.is_empty()
        || s.len() > 5
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(ProxyError::Malformed);
    }
    s.parse().map_err(|_| ProxyError::Malformed)
}

fn parse_v2(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed);
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::Malformed),
    };
    let fam = buf[13];
    let body_len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if 16 + body_len > V2_MAX {
        return Err(ProxyError::Malformed);
    }
    if buf.len() < 16 + body_len {
        return Ok(None);
    }
    let body = &buf[16..16 + body_len];
    let (addr_len, source) = match (fam >> 4, fam & 0x0f) {
        (0, _) => (0, None),
        (1, 1 | 2) => {
            if body.len() < 12 {
                return Err(ProxyError::Malformed);
            }
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            (12, Some(SocketAddr::new(ip.into(), u16::from_be_bytes([body[8], body[9]]))))
        }
        (2, 1 | 2) => {
            if body.len() < 36 {
                return Err(ProxyError::Malformed);
            }
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            (
                36,
                Some(SocketAddr::new(
                    Ipv6Addr::from(octets).into(),
                    u16::from_be_bytes([body[32], body[33]]),
                )),
            )
        }
        (3, 1 | 2) if body.len() >= 216 => (216, None),
        _ => return Err(ProxyError::Malformed),
    };
    // TLVs: type (1), length (2), value; they must tile the rest exactly.
    let mut tlvs = &body[addr_len..];
    while !tlvs.is_empty() {
        if tlvs.len() < 3 {
            return Err(ProxyError::Malformed);
        }
        let len = u16::from_be_bytes([tlvs[1], tlvs[2]]) as usize;
        if tlvs.len() < 3 + len {
            return Err(ProxyError::Malformed);
        }
        tlvs = &tlvs[3 + len..];
    }
    // LOCAL: the proxy's own connection (a health check); the addresses mean nothing.
    Ok(Some(ProxyHeader { source: if local { None } else { source }, len: 16 + body_len }))
}

/// A set of addresses and networks: `--forwarded-allow-ips` (the peers whose forwarding
/// headers are believed) and `--proxy-allow-from` (the peers allowed to send a PROXY header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    any: bool,
    /// `unix`: peers on a Unix socket (local processes; they have no address).
    unix: bool,
    nets: Vec<(IpAddr, u8)>,
}

impl Default for TrustedProxies {
    /// 127.0.0.1 and Unix-socket peers, as gunicorn does (uvicorn: 127.0.0.1): only a
    /// process on this host can connect to either.
    fn default() -> Self {
        TrustedProxies { any: false, unix: true, nets: vec![(IpAddr::V4(Ipv4Addr::LOCALHOST), 32)] }
    }
}

impl TrustedProxies {
    /// 127.0.0.1 and ::1: the default of `--proxy-allow-from`, as gunicorn's.
    pub fn loopback() -> TrustedProxies {
        TrustedProxies {
            any: false,
            unix: false,
            nets: vec![(IpAddr::V4(Ipv4Addr::LOCALHOST), 32), (IpAddr::V6(Ipv6Addr::LOCALHOST), 128)],
        }
    }

    /// A comma-separated list of addresses and CIDRs, `unix` (peers on a Unix socket), or
    /// `*` (everyone, Unix-socket peers too).
    pub fn parse(s: &str) -> Result<TrustedProxies, String> {
        let mut t = TrustedProxies { any: false, unix: false, nets: Vec::new() };
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                t.any = true;
                continue;
            }
            if item == "unix" {
                t.unix = true;
                continue;
            }
            let (addr, prefix) = match item.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (item, None),
            };
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("invalid address {item:?} (addresses, CIDRs, unix or *)"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("invalid prefix in {item:?}"))?,
            };
            t.nets.push((ip, prefix));
        }
        Ok(t)
    }

    /// Whether `peer` is in the set: a TCP peer by its address, a Unix-socket peer by `unix`.
    pub fn contains_peer(&self, peer: &crate::peer::Peer) -> bool {
        match peer.ip() {
            Some(ip) => self.contains(ip),
            None => self.any || self.unix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.any || self.nets.iter().any(|&(net, prefix)| in_net(ip, net, prefix))
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `--forwarded-headers`: the one family of forwarding headers that is believed. The other
/// family is ignored whole, never mixed in: nginx and the AWS ALB set `X-Forwarded-*` and pass
/// a client's `Forwarded` through untouched, so believing both would let the client speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeaders {
    /// `X-Forwarded-For` / `-Proto` (and `-Host` with `--forwarded-host`), as gunicorn and
    /// uvicorn read them: what nginx and the ALB set.
    #[default]
    XForwarded,
    /// RFC 7239 `Forwarded` (`for=`, `proto=`, and `host=` with `--forwarded-host`).
    Forwarded,
}

impl ForwardedHeaders {
    pub fn parse(s: &str) -> Result<ForwardedHeaders, String> {
        match s {
            "x-forwarded" => Ok(ForwardedHeaders::XForwarded),
            "forwarded" => Ok(ForwardedHeaders::Forwarded),
            _ => Err(format!("invalid forwarded-header family {s:?} (x-forwarded or forwarded)")),
        }
    }
}

/// How forwarding headers from a trusted peer are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForwardedRules {
    pub family: ForwardedHeaders,
    /// Believe the forwarded host (`X-Forwarded-Host` or `host=`). Off by default: the ALB
    /// does not set it, so behind an ALB it would come from the client.
    pub host: bool,
}

/// What trusted forwarding headers say about the client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forwarded<'a> {
    pub client: Option<IpAddr>,
    pub proto: Option<&'static str>,
    /// The host the client asked for, when `ForwardedRules::host` is on and a proxy says it.
    pub host: Option<&'a [u8]>,
}

/// Read the forwarding headers of a request whose peer is trusted, in the one family that
/// `rules` names. Addresses are walked from the right (the hop nearest to us), skipping
/// trusted proxies: the first untrusted one is the client, so a client cannot spoof its
/// address by sending its own `X-Forwarded-For`. Proto and host come from the hop the walk
/// stopped at (`Forwarded`) or from the nearest proxy's value (`X-Forwarded-*`: the last one).
pub fn forwarded<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    trusted: &TrustedProxies,
    rules: ForwardedRules,
) -> Forwarded<'a> {
    match rules.family {
        ForwardedHeaders::XForwarded => x_forwarded(headers, trusted, rules.host),
        ForwardedHeaders::Forwarded => rfc7239(headers, trusted, rules.host),
    }
}

fn x_forwarded<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    trusted: &TrustedProxies,
    want_host: bool,
) -> Forwarded<'a> {
    let mut hops: Vec<&[u8]> = Vec::new();
    let mut proto: Option<&[u8]> = None;
    let mut host: Option<&[u8]> = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            hops.extend(value.split(|&b| b == b',').map(trim));
        } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
            proto = last_item(value).or(proto);
        } else if want_host && name.eq_ignore_ascii_case("x-forwarded-host") {
            host = last_item(value).or(host);
        }
    }
    let client = walk(&hops, trusted).map(|(ip, _)| ip);
    Forwarded { client, proto: proto.and_then(scheme), host }
}

fn rfc7239<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    trusted: &TrustedProxies,
    want_host: bool,
) -> Forwarded<'a> {
    /// One forwarded-element: what one proxy saw of its client.
    #[derive(Default)]
    struct Element<'a> {
        node: &'a [u8],
        proto: Option<&'a [u8]>,
        host: Option<&'a [u8]>,
    }
    let mut elements: Vec<Element<'a>> = Vec::new();
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("forwarded") {
            continue;
        }
        for raw in value.split(|&b| b == b',') {
            let mut element = Element::default();
            for pair in raw.split(|&b| b == b';') {
                let pair = trim(pair);
                let Some(eq) = pair.iter().position(|&b| b == b'=') else { continue };
                let (k, v) = (trim(&pair[..eq]), trim(&pair[eq + 1..]));
                if k.eq_ignore_ascii_case(b"for") {
                    element.node = v;
                } else if k.eq_ignore_ascii_case(b"proto") {
                    element.proto = Some(unquote(v));
                } else if k.eq_ignore_ascii_case(b"host") {
                    element.host = Some(unquote(v));
                }
            }
            elements.push(element);
        }
    }
    let nodes: Vec<&[u8]> = elements.iter().map(|e| e.node).collect();
    let Some((client, at)) = walk(&nodes, trusted) else {
        return Forwarded::default();
    };
    let element = &elements[at];
    Forwarded {
        client: Some(client),
        proto: element.proto.and_then(scheme),
        host: if want_host { element.host } else { None },
    }
}

/// Walk `hops` from the right through trusted proxies; the first untrusted address (or the
/// leftmost one, when all are trusted) is the client, with its index. A hop that is not an
/// address (`unknown`, an obfuscated name, garbage) ends the walk at the hop before it.
fn walk(hops: &[&[u8]], trusted: &TrustedProxies) -> Option<(IpAddr, usize)> {
    let mut client = None;
    for (i, hop) in hops.iter().enumerate().rev() {
        let Some(ip) = parse_node(hop) else { break };
        client = Some((ip, i));
        if !trusted.contains(ip) {
            break;
        }
    }
    client
}

/// The last item of a comma-separated value: the one the nearest proxy appended.
fn last_item(value: &[u8]) -> Option<&[u8]> {
    value.split(|&b| b == b',').map(trim).next_back().filter(|v| !v.is_empty())
}

fn scheme(p: &[u8]) -> Option<&'static str> {
    let p = unquote(p);
    if p.eq_ignore_ascii_case(b"https") {
        Some("https")
    } else if p.eq_ignore_ascii_case(b"http") {
        Some("http")
    } else {
        None
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let e = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(s, |i| i + 1);
    &v[s..e]
}

fn unquote(v: &[u8]) -> &[u8] {
    if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

/// An address from `X-Forwarded-For` or `for=`: `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:80`,
/// `2001:db8::1`; obfuscated identifiers (`_hidden`, `unknown`) give `None`.
fn parse_node(v: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(unquote(v)).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_v1() {
        let h = parse_proxy_header(b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET", ProxyProtocol::V1)
            .unwrap()
            .unwrap();
        assert_eq!(h.source, Some("192.0.2.1:56324".parse().unwrap()));
        assert_eq!(h.len, 45);
        let h = parse_proxy_header(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", ProxyProtocol::Auto)
            .unwrap()
            .unwrap();
        assert_eq!(h.source, Some("[2001:db8::1]:1".parse().unwrap()));
        assert_eq!(
            parse_proxy_header(b"PROXY UNKNOWN\r\n", ProxyProtocol::V1).unwrap().unwrap().source,
            None
        );
        assert_eq!(parse_proxy_header(b"PROXY TCP4 1.2.3.4", ProxyProtocol::V1), Ok(None));
        assert_eq!(parse_proxy_header(b"PRO", ProxyProtocol::Auto), Ok(None));
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
            b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert_eq!(parse_proxy_header(bad, ProxyProtocol::V1), Err(ProxyError::Malformed), "{bad:?}");
        }
        assert_eq!(parse_proxy_header(b"GET / HTTP/1.1\r\n", ProxyProtocol::V1), Err(ProxyError::Missing));
        assert_eq!(parse_proxy_header(&[b'x'; 200], ProxyProtocol::Auto), Err(ProxyError::Missing));
    }

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.push(0x20 | cmd);
        v.push(fam);
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn proxy_v2() {
        let mut body = vec![10, 0, 0, 1, 10, 0, 0, 2, 0x1f, 0x90, 0, 80];
        body.extend_from_slice(&[0x04, 0, 2, 0xab, 0xcd]); // a TLV
        let h = parse_proxy_header(&v2(1, 0x11, &body), ProxyProtocol::V2).unwrap().unwrap();
        assert_eq!(h.source, Some("10.0.0.1:8080".parse().unwrap()));
        assert_eq!(h.len, 16 + body.len());
        // LOCAL (NLB health checks): no source.
        let h = parse_proxy_header(&v2(0, 0x00, &[]), ProxyProtocol::Auto).unwrap().unwrap();
        assert_eq!(h.source, None);
        // Incomplete, then malformed variants.
        let full = v2(1, 0x11, &body);
        assert_eq!(parse_proxy_header(&full[..20], ProxyProtocol::V2), Ok(None));
        let mut bad_tlv = body.clone();
        bad_tlv.extend_from_slice(&[0x04, 0, 9]);
        assert_eq!(parse_proxy_header(&v2(1, 0x11, &bad_tlv), ProxyProtocol::V2), Err(ProxyError::Malformed));
        assert_eq!(
            parse_proxy_header(&v2(1, 0x11, &body[..8]), ProxyProtocol::V2),
            Err(ProxyError::Malformed)
        );
        assert_eq!(parse_proxy_header(&v2(2, 0x11, &body), ProxyProtocol::V2), Err(ProxyError::Malformed));
        let mut wrong_version = full.clone();
        wrong_version[12] = 0x11;
        assert_eq!(parse_proxy_header(&wrong_version, ProxyProtocol::V2), Err(ProxyError::Malformed));
        assert_eq!(parse_proxy_header(b"PROXY UNKNOWN\r\n", ProxyProtocol::V2), Err(ProxyError::Missing));
    }

    #[test]
    fn trusted_proxies() {
        let t = TrustedProxies::parse("10.0.0.0/8, 192.168.1.1, ::1").unwrap();
        assert!(t.contains("10.1.2.3".parse().unwrap()));
        assert!(t.contains("192.168.1.1".parse().unwrap()));
        assert!(!t.contains("192.168.1.2".parse().unwrap()));
        assert!(t.contains("::1".parse().unwrap()));
        assert!(t.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(TrustedProxies::parse("*").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("nope").is_err());
        assert!(TrustedProxies::default().contains("127.0.0.1".parse().unwrap()));
        let unix = crate::peer::Peer::Unix;
        assert!(TrustedProxies::default().contains_peer(&unix), "gunicorn trusts Unix-socket peers");
        assert!(TrustedProxies::parse("unix").unwrap().contains_peer(&unix));
        assert!(TrustedProxies::parse("*").unwrap().contains_peer(&unix));
        assert!(!TrustedProxies::parse("127.0.0.1").unwrap().contains_peer(&unix));
        assert!(!TrustedProxies::loopback().contains_peer(&unix));
        assert!(!TrustedProxies::parse("unix").unwrap().contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn forwarding_headers() {
        let trusted = TrustedProxies::parse("127.0.0.1,10.0.0.0/8").unwrap();
        let xf = ForwardedRules::default();
        let f = |h: &[(&'static str, &'static str)], rules| {
            forwarded(h.iter().map(|(n, v)| (*n, v.as_bytes())), &trusted, rules)
        };
        // The client cannot spoof: the rightmost untrusted hop wins.
        let r =
            f(&[("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.0.0.5"), ("X-Forwarded-Proto", "https")], xf);
        assert_eq!(r.client, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(r.proto, Some("https"));
        assert_eq!(f(&[("X-Forwarded-For", "_hidden")], xf).client, None);
        assert_eq!(f(&[("X-Forwarded-Proto", "gopher")], xf).proto, None);
        assert_eq!(f(&[], xf), Forwarded::default());
        // The proto the nearest proxy set is the last one.
        assert_eq!(f(&[("X-Forwarded-Proto", "https, http")], xf).proto, Some("http"));
    }

    #[test]
    fn families_never_mix() {
        let trusted = TrustedProxies::parse("127.0.0.1").unwrap();
        let f = |h: &[(&'static str, &'static str)], rules| {
            forwarded(h.iter().map(|(n, v)| (*n, v.as_bytes())), &trusted, rules)
        };
        let xf = ForwardedRules::default();
        let rfc = ForwardedRules { family: ForwardedHeaders::Forwarded, host: false };
        // What nginx sends for a client that wrote its own Forwarded header.
        let nginx = [
            ("Forwarded", "for=6.6.6.6;proto=https"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "http"),
        ];
        let r = f(&nginx, xf);
        assert_eq!(r.client, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(r.proto, Some("http"));
        // A Forwarded header without `for=` does not hide the real X-Forwarded-For.
        let r = f(&[("Forwarded", "foo=bar"), ("X-Forwarded-For", "203.0.113.7")], xf);
        assert_eq!(r.client, Some("203.0.113.7".parse().unwrap()));
        // The RFC 7239 family ignores X-Forwarded-* whole.
        let r = f(&[("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")], rfc);
        assert_eq!(r, Forwarded::default());
        let r = f(&[("Forwarded", "for=\"[2001:db8::7]:443\";proto=https, for=127.0.0.1;proto=http")], rfc);
        assert_eq!(r.client, Some("2001:db8::7".parse().unwrap()));
        // Proto comes from the hop where the walk stopped.
        assert_eq!(r.proto, Some("https"));
        let r = f(&[("Forwarded", "for=6.6.6.6;proto=https, for=203.0.113.9;proto=http")], rfc);
        assert_eq!(r.client, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(r.proto, Some("http"));
    }

    #[test]
    fn forwarded_host_only_when_configured() {
        let trusted = TrustedProxies::parse("127.0.0.1").unwrap();
        let f = |h: &[(&'static str, &'static str)], rules| {
            forwarded(h.iter().map(|(n, v)| (*n, v.as_bytes())), &trusted, rules)
        };
        let h = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Host", "evil.example, app.example")];
        assert_eq!(f(&h, ForwardedRules::default()).host, None);
        let on = ForwardedRules { family: ForwardedHeaders::XForwarded, host: true };
        assert_eq!(f(&h, on).host, Some(&b"app.example"[..]));
        let rfc = ForwardedRules { family: ForwardedHeaders::Forwarded, host: true };
        let r = f(&[("Forwarded", "for=203.0.113.7;host=\"app.example\"")], rfc);
        assert_eq!(r.host, Some(&b"app.example"[..]));
        assert_eq!(f(&h, rfc).host, None);
    }

    #[test]
    fn loopback_allow_list() {
        let l = TrustedProxies::loopback();
        assert!(l.contains("127.0.0.1".parse().unwrap()));
        assert!(l.contains("::1".parse().unwrap()));
        assert!(!l.contains("127.0.0.2".parse().unwrap()));
    }
}
