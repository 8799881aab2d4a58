//! The user name a client certificate stands for: its subject's Common Name, or its first
//! Subject Alternative Name (DNS name, e-mail or URI, in the certificate's order).
//!
//! Only certificates that rustls has already verified against the client CA reach this code,
//! so it reads just the two fields it needs with a small DER walker instead of pulling a full
//! X.509 parser into the build. Anything unexpected yields `None` (no identity), never a panic.

use crate::config::CertIdentity;

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// The user name in a DER certificate, per `which`.
pub fn username(cert_der: &[u8], which: CertIdentity) -> Option<String> {
    let tbs = tbs_fields(cert_der)?;
    match which {
        CertIdentity::Cn => common_name(tbs.subject?),
        CertIdentity::San => first_san(tbs.extensions?),
        CertIdentity::Off => None,
    }
    .filter(|name| !name.is_empty() && !name.chars().any(char::is_control))
}

/// One DER element: tag, contents, and the rest of the input after it.
fn next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers do not occur in the fields we read
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

struct Tbs<'a> {
    subject: Option<&'a [u8]>,
    extensions: Option<&'a [u8]>,
}

fn tbs_fields(cert: &[u8]) -> Option<Tbs<'_>> {
    let (0x30, cert, _) = next(cert)? else {
        return None;
    };
    let (0x30, mut tbs, _) = next(cert)? else {
        return None;
    };
    let mut fields = Vec::with_capacity(10);
    while !tbs.is_empty() {
        let (tag, content, rest) = next(tbs)?;
        fields.push((tag, content));
        tbs = rest;
    }
    // Skip the optional explicit version: serial, signature, issuer, validity, subject follow.
    let start = usize::from(fields.first()?.0 == 0xa0);
    let subject = fields.get(start + 4).map(|&(_, c)| c);
    let extensions = fields
        .iter()
        .find(|(tag, _)| *tag == 0xa3)
        .and_then(|&(_, c)| next(c).map(|(_, seq, _)| seq));
    Some(Tbs {
        subject,
        extensions,
    })
}

/// The last CN of a Name (the most specific one when several are present).
fn common_name(mut name: &[u8]) -> Option<String> {
    let mut found = None;
    while !name.is_empty() {
        let (_, mut set, rest) = next(name)?;
        name = rest;
        while !set.is_empty() {
            let (_, attr, after) = next(set)?;
            set = after;
            let (0x06, oid, value) = next(attr)? else {
                continue;
            };
            if oid == OID_CN {
                let (tag, text, _) = next(value)?;
                // UTF8String, PrintableString, T61String (treated as Latin-1-free ASCII), IA5String.
                if matches!(tag, 0x0c | 0x13 | 0x14 | 0x16) {
                    found = Some(String::from_utf8(text.to_vec()).ok()?);
                }
            }
        }
    }
    found
}

fn first_san(mut extensions: &[u8]) -> Option<String> {
    while !extensions.is_empty() {
        let (_, ext, rest) = next(extensions)?;
        extensions = rest;
        let (0x06, oid, mut after) = next(ext)? else {
            continue;
        };
        if oid != OID_SAN {
            continue;
        }
        let (tag, _, _) = next(after)?;
        if tag == 0x01 {
            after = next(after)?.2; // the `critical` flag
        }
        let (0x04, octets, _) = next(after)? else {
            return None;
        };
        let (0x30, mut names, _) = next(octets)? else {
            return None;
        };
        while !names.is_empty() {
            let (tag, value, rest) = next(names)?;
            names = rest;
            // [1] rfc822Name, [2] dNSName, [6] uniformResourceIdentifier: IA5 strings.
            if matches!(tag, 0x81 | 0x82 | 0x86) {
                return String::from_utf8(value.to_vec()).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>, sans: &[&str]) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "fleet");
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_the_common_name_and_the_first_san() {
        let der = cert(Some("truck-17"), &["v17.fleet.example", "other.example"]);
        assert_eq!(
            username(&der, CertIdentity::Cn).as_deref(),
            Some("truck-17")
        );
        assert_eq!(
            username(&der, CertIdentity::San).as_deref(),
            Some("v17.fleet.example")
        );
        assert_eq!(username(&der, CertIdentity::Off), None);
    }

    #[test]
    fn missing_fields_and_garbage_give_no_identity() {
        let der = cert(None, &[]);
        assert_eq!(username(&der, CertIdentity::Cn), None);
        assert_eq!(username(&der, CertIdentity::San), None);
        assert_eq!(username(&[], CertIdentity::Cn), None);
        assert_eq!(username(&[0x30, 0x84, 0xff], CertIdentity::Cn), None);
        // Every truncation of a real certificate is handled without panicking.
        let der = cert(Some("x"), &["y"]);
        for n in 0..der.len() {
            let _ = username(&der[..n], CertIdentity::San);
        }
    }
}
