//! The subject of a certificate as text (RFC 4514, as OpenSSL and nginx's
//! `$ssl_client_s_dn` print it: `CN=alice,O=Example`), for handlers and the access log.
//!
//! rustls hands over the client's certificate as DER and verifies it, but does not expose
//! its names; this reads just the subject out of the DER: a few nested TLVs, no more.

/// The subject distinguished name of the DER certificate `der`, most specific part first;
/// `None` if the certificate cannot be read that far (a verified one always can).
pub fn subject_of(der: &[u8]) -> Option<String> {
    let (cert, _) = tlv(der, SEQUENCE)?;
    let (tbs, _) = tlv(cert, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT, optional
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest, 0xa0)?.1;
    }
    rest = tlv(rest, INTEGER)?.1; // serialNumber
    rest = tlv(rest, SEQUENCE)?.1; // signature
    rest = tlv(rest, SEQUENCE)?.1; // issuer
    rest = tlv(rest, SEQUENCE)?.1; // validity
    let (mut name, _) = tlv(rest, SEQUENCE)?; // subject
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (mut set, next) = tlv(name, SET)?;
        name = next;
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (atv, next) = tlv(set, SEQUENCE)?;
            set = next;
            let (oid, value) = tlv(atv, OID)?;
            parts.push(format!("{}={}", attribute_name(oid), value_text(value)?));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

/// Split one TLV with tag `tag` off the front of `der`: its contents and what follows.
fn tlv(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = der.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// The short name of a well-known attribute type, else its dotted OID.
fn attribute_name(oid: &[u8]) -> String {
    let known = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "street",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return dotted(oid),
    };
    known.to_string()
}

fn dotted(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// A string value, escaped as RFC 4514 asks; a value of another type as `#` and its hex.
fn value_text(tlv_bytes: &[u8]) -> Option<String> {
    let tag = *tlv_bytes.first()?;
    let (value, _) = tlv(tlv_bytes, tag)?;
    let text = match tag {
        // UTF8String, PrintableString, IA5String, TeletexString (read as Latin-1 would be
        // wrong as often as right; treated as UTF-8 when it is)
        0x0c | 0x13 | 0x16 | 0x14 => std::str::from_utf8(value).ok().map(str::to_string),
        // BMPString: UTF-16BE
        0x1e if value.len() % 2 == 0 => {
            let units: Vec<u16> = value.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    };
    Some(match text {
        Some(text) => escape(&text),
        None => {
            let hex: String = tlv_bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("#{hex}")
        }
    })
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        if c.is_control() {
            out.push_str(&format!("\\{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(names: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        for (t, v) in names {
            dn.push(t.clone(), *v);
        }
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_the_subject_most_specific_first() {
        let der = cert_with(&[
            (rcgen::DnType::CountryName, "DE"),
            (rcgen::DnType::OrganizationName, "Example, Inc"),
            (rcgen::DnType::CommonName, "alice"),
        ]);
        assert_eq!(subject_of(&der).as_deref(), Some("CN=alice,O=Example\\, Inc,C=DE"));
    }

    #[test]
    fn unknown_attributes_show_their_oid() {
        let der = cert_with(&[(rcgen::DnType::CustomDnType(vec![1, 2, 3, 4]), "x")]);
        assert_eq!(subject_of(&der).as_deref(), Some("1.2.3.4=x"));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(subject_of(b"\x30\x03\x30\x01"), None);
        assert_eq!(subject_of(&[]), None);
    }
}
