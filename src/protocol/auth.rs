//! HTTP authentication of a client's opening handshake (Qt 6.6's
//! `authenticationRequired`): reading a 401's `WWW-Authenticate`
//! challenges and writing the `Authorization` header that answers one, with
//! Basic (RFC 7617) or Digest (RFC 7616: MD5 or SHA-256, qop=auth). No I/O.

use data_encoding::BASE64;
use md5::Md5;
use sha2::{Digest as _, Sha256};

use super::handshake::Headers;

/// The hash of a Digest challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn hex(self, text: &str) -> String {
        let bytes = match self {
            Algorithm::Md5 => Md5::digest(text.as_bytes()).to_vec(),
            Algorithm::Sha256 => Sha256::digest(text.as_bytes()).to_vec(),
        };
        data_encoding::HEXLOWER.encode(&bytes)
    }
}

/// One challenge of a `WWW-Authenticate` header that we can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: String,
    },
    Digest {
        realm: String,
        nonce: String,
        opaque: Option<String>,
        algorithm: Algorithm,
        /// Whether the server offers qop=auth (else the RFC 2069 form).
        qop_auth: bool,
    },
}

impl Challenge {
    /// The realm the server names, for the handler to show.
    pub fn realm(&self) -> &str {
        match self {
            Challenge::Basic { realm } | Challenge::Digest { realm, .. } => realm,
        }
    }

    /// How much we prefer it: Digest with SHA-256, then with MD5, then Basic.
    fn strength(&self) -> u8 {
        match self {
            Challenge::Basic { .. } => 0,
            Challenge::Digest {
                algorithm: Algorithm::Md5,
                ..
            } => 1,
            Challenge::Digest { .. } => 2,
        }
    }
}

/// The challenges of a 401 response's headers, the strongest first;
/// schemes and algorithms we cannot answer are left out.
pub fn challenges(headers: &Headers) -> Vec<Challenge> {
    let mut found: Vec<Challenge> = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("WWW-Authenticate"))
        .flat_map(|(_, value)| parse(value))
        .collect();
    found.sort_by_key(|c| std::cmp::Reverse(c.strength()));
    found
}

/// The challenges of a response head if it is a 401, else None.
pub fn unauthorized(head: &[u8]) -> Option<Vec<Challenge>> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut slots);
    response.parse(head).ok()?;
    if response.code != Some(401) {
        return None;
    }
    let headers: Headers = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Some(challenges(&headers))
}

/// The value of an `Authorization` header with `user` and `password`.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        BASE64.encode(format!("{user}:{password}").as_bytes())
    )
}

/// The `Authorization` header that answers `challenge` for a GET of `uri`
/// (the request target); `cnonce` is a fresh random string for Digest.
pub fn authorization(
    challenge: &Challenge,
    user: &str,
    password: &str,
    uri: &str,
    cnonce: &str,
) -> String {
    let Challenge::Digest {
        realm,
        nonce,
        opaque,
        algorithm,
        qop_auth,
    } = challenge
    else {
        return basic(user, password);
    };
    let secret = algorithm.hex(&format!("{user}:{realm}:{password}"));
    let request = algorithm.hex(&format!("GET:{uri}"));
    // The first (and only) use of this nonce.
    let nc = "00000001";
    let response = if *qop_auth {
        algorithm.hex(&format!("{secret}:{nonce}:{nc}:{cnonce}:auth:{request}"))
    } else {
        algorithm.hex(&format!("{secret}:{nonce}:{request}"))
    };
    let mut header = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm={}, response=\"{response}\"",
        quote(user),
        quote(realm),
        quote(nonce),
        quote(uri),
        algorithm.name(),
    );
    if *qop_auth {
        header += &format!(", qop=auth, nc={nc}, cnonce=\"{}\"", quote(cnonce));
    }
    if let Some(opaque) = opaque {
        header += &format!(", opaque=\"{}\"", quote(opaque));
    }
    header
}

fn quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The challenges of one header value: `Scheme param=value, ...`, where a
/// value may be a quoted string and several challenges may follow one another.
fn parse(value: &str) -> Vec<Challenge> {
    let mut found = Vec::new();
    let mut scheme: Option<String> = None;
    let mut params: Vec<(String, String)> = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..end];
        let after = rest[end..].trim_start_matches([' ', '\t']);
        if let Some(after_eq) = after.strip_prefix('=').filter(|_| scheme.is_some()) {
            // A parameter of the current challenge.
            let after_eq = after_eq.trim_start();
            let (value, next) = match after_eq.strip_prefix('"') {
                Some(quoted) => unquote(quoted),
                None => {
                    let end = after_eq.find(',').unwrap_or(after_eq.len());
                    (after_eq[..end].trim().to_string(), &after_eq[end..])
                }
            };
            params.push((token.to_ascii_lowercase(), value));
            rest = next;
        } else if token.is_empty() {
            break;
        } else {
            // A new challenge begins (a token68 after Basic is not a parameter).
            if let Some(done) = scheme.take() {
                found.extend(challenge(&done, &params));
            }
            params.clear();
            scheme = Some(token.to_string());
            rest = after;
        }
    }
    if let Some(done) = scheme {
        found.extend(challenge(&done, &params));
    }
    found
}

/// A quoted string's content and what follows its closing quote.
fn unquote(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '"' => return (value, &text[i + 1..]),
            c => value.push(c),
        }
    }
    (value, "")
}

fn challenge(scheme: &str, params: &[(String, String)]) -> Option<Challenge> {
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let realm = param("realm").unwrap_or_default();
    if scheme.eq_ignore_ascii_case("Basic") {
        return Some(Challenge::Basic { realm });
    }
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let algorithm = match param("algorithm").as_deref().map(str::to_ascii_uppercase) {
        None => Algorithm::Md5,
        Some(name) if name == "MD5" => Algorithm::Md5,
        Some(name) if name == "SHA-256" => Algorithm::Sha256,
        // The -sess variants and SHA-512-256 are not answered.
        Some(_) => return None,
    };
    let qop = param("qop");
    let qop_auth = qop
        .as_deref()
        .is_some_and(|q| q.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")));
    if qop.is_some() && !qop_auth {
        // Only auth-int is offered: it would need the body.
        return None;
    }
    Some(Challenge::Digest {
        realm,
        nonce: param("nonce")?,
        opaque: param("opaque"),
        algorithm,
        qop_auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> Headers {
        values
            .iter()
            .map(|v| ("WWW-Authenticate".to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn basic_is_user_colon_password_in_base64() {
        // RFC 7617 §2's example.
        assert_eq!(
            basic("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    /// RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
    #[test]
    fn digest_answers_as_rfc_7616_shows() {
        let found = challenges(&headers(&[
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=MD5, \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        ]));
        assert_eq!(found.len(), 2);
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let uri = "/dir/index.html";
        let sha = authorization(&found[0], "Mufasa", "Circle of Life", uri, cnonce);
        assert!(sha.contains("algorithm=SHA-256"), "{sha}");
        assert!(
            sha.contains(
                "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
            ),
            "{sha}"
        );
        let md5 = authorization(&found[1], "Mufasa", "Circle of Life", uri, cnonce);
        assert!(
            md5.contains("response=\"8ca523f5e9506fed4657c9700eebdbec\""),
            "{md5}"
        );
        assert!(md5.contains("qop=auth, nc=00000001"), "{md5}");
        assert!(md5.contains("opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""));
    }

    #[test]
    fn several_challenges_in_one_header_strongest_first() {
        let found = challenges(&headers(&[
            "Basic realm=\"a, b\", Newauth realm=\"x\", Digest realm=\"d\", nonce=\"n\"",
        ]));
        assert_eq!(
            found,
            [
                Challenge::Digest {
                    realm: "d".into(),
                    nonce: "n".into(),
                    opaque: None,
                    algorithm: Algorithm::Md5,
                    qop_auth: false,
                },
                Challenge::Basic {
                    realm: "a, b".into()
                },
            ]
        );
        assert_eq!(found[1].realm(), "a, b");
    }

    #[test]
    fn what_cannot_be_answered_is_left_out() {
        let found = challenges(&headers(&[
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256",
            "Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"",
            "Bearer realm=\"r\"",
        ]));
        assert!(found.is_empty(), "{found:?}");
    }
}
