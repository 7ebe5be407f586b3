//! Subprotocol negotiation (RFC 6455 §4.1, §4.2.2): the client lists what it
//! speaks, in order of preference, and the server picks one or none.

/// The protocols named by `Sec-WebSocket-Protocol` header values, in order.
pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// The client's first preference that the server supports, as Qt picks it.
pub fn choose(requested: &[String], supported: &[String]) -> Option<String> {
    requested.iter().find(|p| supported.contains(p)).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_lists_across_headers() {
        assert_eq!(
            parse(["chat, superchat", " v2 ,,"]),
            strings(&["chat", "superchat", "v2"])
        );
    }

    #[test]
    fn picks_the_clients_first_preference() {
        let requested = strings(&["b", "a"]);
        assert_eq!(choose(&requested, &strings(&["a", "b"])), Some("b".into()));
        assert_eq!(choose(&requested, &strings(&["c"])), None);
    }
}
