//! Trust settings of a registry (R12): the insecure flag and the CA bundle,
//! checked so that only certificates are ever stored and echoed.

use super::error::{Error, Result};

/// Largest accepted CA bundle.
pub const MAX_CA_BUNDLE_LEN: usize = 64 * 1024;
/// Most certificates in one bundle.
pub const MAX_CA_CERTIFICATES: usize = 10;

const FIELD: &str = "ca_certificate_pem";

/// Checks a PEM CA bundle: `CERTIFICATE` blocks only, with nothing but
/// whitespace between them. Returns the bundle normalized to LF line endings
/// and one trailing newline; an empty bundle stays empty.
///
/// A private key is refused without echoing any part of the input: the
/// message names only the block type.
pub fn check_ca_bundle(pem: &str) -> Result<String> {
    if pem.len() > MAX_CA_BUNDLE_LEN {
        return Err(Error::invalid(
            FIELD,
            format!("must be at most {MAX_CA_BUNDLE_LEN} bytes"),
        ));
    }
    if pem.trim().is_empty() {
        return Ok(String::new());
    }
    if pem.contains("PRIVATE KEY") {
        return Err(Error::invalid(
            FIELD,
            "contains a private key: give only the CA's CERTIFICATE blocks (the key was not stored)",
        ));
    }
    let mut out = String::new();
    let mut count = 0;
    let mut lines = pem.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            return Err(Error::invalid(
                FIELD,
                "must contain only PEM blocks (-----BEGIN CERTIFICATE-----)",
            ));
        };
        if label != "CERTIFICATE" {
            return Err(Error::invalid(
                FIELD,
                format!("has a {label:.40} block: only CERTIFICATE blocks are accepted"),
            ));
        }
        let mut body = String::new();
        let mut closed = false;
        for line in lines.by_ref() {
            if line == "-----END CERTIFICATE-----" {
                closed = true;
                break;
            }
            body.push_str(line);
        }
        if !closed {
            return Err(Error::invalid(
                FIELD,
                format!("certificate {} has no END line", count + 1),
            ));
        }
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|_| {
                Error::invalid(
                    FIELD,
                    format!("certificate {} is not valid base64", count + 1),
                )
            })?;
        // A DER certificate is an ASN.1 SEQUENCE; anything else is not one.
        if der.first() != Some(&0x30) || der.len() < 64 {
            return Err(Error::invalid(
                FIELD,
                format!("certificate {} is not a DER certificate", count + 1),
            ));
        }
        count += 1;
        if count > MAX_CA_CERTIFICATES {
            return Err(Error::invalid(
                FIELD,
                format!("must hold at most {MAX_CA_CERTIFICATES} certificates"),
            ));
        }
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for chunk in body.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A syntactically valid self-signed certificate body for tests.
    pub(crate) fn test_cert() -> String {
        use base64::Engine as _;
        let mut der = vec![0x30, 0x82, 0x01, 0x00];
        der.extend(std::iter::repeat_n(0x42u8, 200));
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    #[test]
    fn an_empty_bundle_is_no_bundle() {
        assert_eq!(check_ca_bundle("  \n").unwrap(), "");
    }

    #[test]
    fn certificates_are_accepted_and_normalized() {
        let two = format!(
            "{}\r\n\r\n{}",
            test_cert().replace('\n', "\r\n"),
            test_cert()
        );
        let out = check_ca_bundle(&two).unwrap();
        assert_eq!(out, format!("{}{}", test_cert(), test_cert()));
    }

    #[test]
    fn a_private_key_is_refused_without_echo() {
        let pem = format!(
            "{}-----BEGIN PRIVATE KEY-----\nS3CRETKEYBYTES\n-----END PRIVATE KEY-----\n",
            test_cert()
        );
        let err = check_ca_bundle(&pem).unwrap_err().to_string();
        assert!(err.contains("private key"), "{err}");
        assert!(!err.contains("S3CRET"), "{err}");
    }

    #[test]
    fn other_block_types_and_garbage_are_refused() {
        let csr = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
        assert!(check_ca_bundle(csr)
            .unwrap_err()
            .to_string()
            .contains("CERTIFICATE REQUEST"));
        assert!(check_ca_bundle("hello").is_err());
        assert!(check_ca_bundle("-----BEGIN CERTIFICATE-----\nAAAA\n").is_err());
        assert!(
            check_ca_bundle("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }

    #[test]
    fn more_than_ten_certificates_or_64_kib_are_refused() {
        let eleven = test_cert().repeat(11);
        assert!(check_ca_bundle(&eleven)
            .unwrap_err()
            .to_string()
            .contains("at most 10"));
        let huge = " ".repeat(MAX_CA_BUNDLE_LEN + 1);
        assert!(check_ca_bundle(&huge).is_err());
    }
}
