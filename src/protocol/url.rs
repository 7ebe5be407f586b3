//! ws:// and wss:// URLs: what wsbind accepts, checked once for Python and the network alike.

use url::Url;

use crate::errors::Error;

/// Parses `text` as a WebSocket URL: ws:// or wss://, with a host.
pub fn parse(text: &str) -> Result<Url, Error> {
    // "localhost:8080" parses as the scheme "localhost"; "127.0.0.1:8080" not at all.
    if !text.contains("://") {
        return Err(Error::InvalidUrl(format!(
            "invalid URL {text:?}: no scheme; use ws://{text} or wss://{text}"
        )));
    }
    let url =
        Url::parse(text).map_err(|e| Error::InvalidUrl(format!("invalid URL {text:?}: {e}")))?;
    match url.scheme() {
        "ws" | "wss" => {}
        other => {
            return Err(Error::InvalidUrl(format!(
                "Unsupported WebSocket scheme {other:?} in {text:?}: use ws:// or wss://"
            )))
        }
    }
    // The URL standard reads "ws:///path" as "ws://path/", as a special
    // scheme's; Qt and websockets read no host there, and so does wsbind.
    // It drops tabs and newlines first, so they are dropped here too.
    let text_read: String = text
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let after_scheme = text_read.split_once("://").map_or("", |(_, rest)| rest);
    if url.host_str().is_none_or(str::is_empty) || after_scheme.starts_with(['/', '\\']) {
        return Err(Error::InvalidUrl(format!("invalid URL {text:?}: no host")));
    }
    Ok(url)
}

/// The request target of `url`: its path and query, as a request sends it.
pub fn target(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    }
}

/// The host and port to open a TCP connection to.
pub fn endpoint(url: &Url) -> (String, u16) {
    let host = url.host_str().unwrap_or_default();
    // IPv6 literals come bracketed from the url crate; sockets want them bare.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let default = if url.scheme() == "wss" { 443 } else { 80 };
    (host, url.port().unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ws_and_wss() {
        assert!(parse("ws://localhost:8080/chat?x=1").is_ok());
        assert!(parse("wss://example.com").is_ok());
    }

    #[test]
    fn rejects_other_schemes_and_garbage() {
        let err = parse("http://example.com").unwrap_err().to_string();
        assert!(err.contains("Unsupported WebSocket scheme"), "{err}");
        assert!(parse("not a url").is_err());
        assert!(parse("ws://").is_err());
    }

    #[test]
    fn a_third_slash_leaves_no_host() {
        // Not "ws://path/", as the URL standard would read it.
        for text in [
            "ws:///path",
            "wss:////x",
            "ws://\\x",
            "ws://\t/localhost:1/",
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains("no host"), "{err}");
        }
    }

    #[test]
    fn a_url_without_scheme_gets_a_hint() {
        for text in ["127.0.0.1:8080", "localhost:8080"] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("use ws://{text} or wss://{text}")),
                "{err}"
            );
        }
    }

    #[test]
    fn endpoint_defaults_ports_and_unbrackets_ipv6() {
        assert_eq!(endpoint(&parse("ws://a.b").unwrap()), ("a.b".into(), 80));
        assert_eq!(endpoint(&parse("wss://a.b").unwrap()), ("a.b".into(), 443));
        assert_eq!(
            endpoint(&parse("ws://[::1]:9000/x").unwrap()),
            ("::1".into(), 9000)
        );
    }
}
