//! Which address a request comes from. The socket peer, unless the peer is one of
//! `TRUSTED_PROXIES`; only then are `X-Forwarded-For` (or, when that is absent,
//! `Forwarded`) believed, walking the hops from the right and stopping at the first one
//! that is not a trusted proxy. A client can write anything into those headers, but it
//! can only add hops to the left of the one its proxy appends, so it cannot leave its own
//! bucket. Pure: header values in, an address out.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Hops examined at most, from the right, before settling for the last trusted one: a
/// header with thousands of hops costs no more than this.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// The client address of a request.
///
/// `x_forwarded_for` and `forwarded` are the values of every line of those headers, in
/// the order received. `X-Forwarded-For` wins when both are present: it is what common
/// proxies (nginx, HAProxy, Caddy, Traefik) append to, and believing a `Forwarded` header
/// the proxy does not maintain would let a client choose its own address.
pub fn client_addr<'h>(
    peer: IpAddr,
    trusted_proxies: &[IpNet],
    x_forwarded_for: impl IntoIterator<Item = &'h str>,
    forwarded: impl IntoIterator<Item = &'h str>,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted_proxies) {
        return peer;
    }
    let mut hops: Vec<&str> = x_forwarded_for
        .into_iter()
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .collect();
    if hops.is_empty() {
        hops = forwarded
            .into_iter()
            .flat_map(|line| line.split(','))
            .filter_map(forwarded_for_value)
            .collect();
    }
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        match parse_hop(hop) {
            Some(addr) => {
                client = addr;
                if !is_trusted(addr, trusted_proxies) {
                    return addr;
                }
            }
            // A hop that is not an address ("unknown", an obfuscated name, garbage) was
            // not written by a trusted proxy: the last trusted hop is all we know.
            None => return client,
        }
    }
    client
}

fn is_trusted(addr: IpAddr, trusted_proxies: &[IpNet]) -> bool {
    trusted_proxies.iter().any(|net| net.contains(&addr))
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.60;proto=http`), unquoted.
fn forwarded_for_value(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        Some(
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value),
        )
    })
}

/// One hop as proxies write it: `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(addr) = hop.parse::<IpAddr>() {
        return Some(addr.to_canonical());
    }
    if let Ok(sock) = hop.parse::<SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    hop.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
        .map(|addr| addr.to_canonical())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rate_limit::key::tests::any_ip;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    const NONE: [&str; 0] = [];

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_the_headers_say() {
        let addr = client_addr(
            ip("198.51.100.9"),
            &nets(&["10.0.0.0/8"]),
            ["1.2.3.4"],
            ["for=5.6.7.8"],
        );
        assert_eq!(addr, ip("198.51.100.9"));
    }

    #[test]
    fn with_no_trusted_proxies_headers_are_ignored() {
        assert_eq!(
            client_addr(ip("127.0.0.1"), &[], ["1.2.3.4"], NONE),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_trusted_proxy_reports_the_right_most_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client invented "1.2.3.4"; its proxy appended the real address.
        let addr = client_addr(
            ip("10.0.0.2"),
            &trusted,
            ["1.2.3.4, 203.0.113.7, 10.0.0.1"],
            NONE,
        );
        assert_eq!(addr, ip("203.0.113.7"));
    }

    #[test]
    fn header_lines_are_read_in_order() {
        let trusted = nets(&["10.0.0.0/8"]);
        let addr = client_addr(ip("10.0.0.2"), &trusted, ["1.2.3.4", "203.0.113.7"], NONE);
        assert_eq!(addr, ip("203.0.113.7"));
    }

    #[test]
    fn forwarded_is_used_when_x_forwarded_for_is_absent() {
        let trusted = nets(&["10.0.0.0/8"]);
        let addr = client_addr(
            ip("10.0.0.2"),
            &trusted,
            NONE,
            [r#"for=1.2.3.4, for="[2001:db8:cafe::17]:4711";proto=https, For=10.0.0.1"#],
        );
        assert_eq!(addr, ip("2001:db8:cafe::17"));
    }

    #[test]
    fn x_forwarded_for_wins_over_forwarded() {
        let trusted = nets(&["10.0.0.0/8"]);
        let addr = client_addr(ip("10.0.0.2"), &trusted, ["203.0.113.7"], ["for=1.2.3.4"]);
        assert_eq!(addr, ip("203.0.113.7"));
    }

    #[test]
    fn a_garbage_hop_stops_at_the_last_trusted_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        let addr = client_addr(ip("10.0.0.2"), &trusted, ["nonsense, 10.0.0.1"], NONE);
        assert_eq!(addr, ip("10.0.0.1"));
        let addr = client_addr(ip("10.0.0.2"), &trusted, NONE, ["for=unknown"]);
        assert_eq!(addr, ip("10.0.0.2"));
    }

    #[test]
    fn hops_with_ports_and_brackets_parse() {
        assert_eq!(parse_hop("203.0.113.7:80"), Some(ip("203.0.113.7")));
        assert_eq!(parse_hop("[2001:db8::1]:443"), Some(ip("2001:db8::1")));
        assert_eq!(parse_hop("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_hop("::ffff:1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(parse_hop("_hidden"), None);
    }

    #[test]
    fn a_mapped_ipv4_peer_matches_an_ipv4_trusted_network() {
        let trusted = nets(&["127.0.0.1/32"]);
        let addr = client_addr(ip("::ffff:127.0.0.1"), &trusted, ["203.0.113.7"], NONE);
        assert_eq!(addr, ip("203.0.113.7"));
    }

    #[test]
    fn only_the_last_hops_are_examined() {
        let trusted = nets(&["10.0.0.0/8"]);
        let mut hops = vec!["203.0.113.7".to_string()];
        hops.extend((0..MAX_FORWARDED_HOPS + 5).map(|i| format!("10.0.0.{}", i % 250)));
        let header = hops.join(",");
        let addr = client_addr(ip("10.0.0.2"), &trusted, [header.as_str()], NONE);
        assert!(is_trusted(addr, &trusted), "{addr}");
    }

    proptest! {
        #[test]
        fn invented_headers_never_move_an_untrusted_peer(
            peer in any_ip(),
            xff in ".{0,60}",
            fwd in ".{0,60}",
        ) {
            let trusted = nets(&["10.0.0.0/8"]);
            prop_assume!(!is_trusted(peer.to_canonical(), &trusted));
            prop_assert_eq!(
                client_addr(peer, &trusted, [xff.as_str()], [fwd.as_str()]),
                peer.to_canonical()
            );
        }

        #[test]
        fn a_prefix_invented_by_the_client_never_changes_the_answer(
            invented in proptest::collection::vec(any_ip(), 0..6),
            garbage in "[a-z_ ]{0,12}",
            client in any_ip(),
        ) {
            let trusted = nets(&["10.0.0.0/8"]);
            prop_assume!(!is_trusted(client.to_canonical(), &trusted));
            let mut hops: Vec<String> = invented.iter().map(IpAddr::to_string).collect();
            hops.push(garbage);
            hops.push(client.to_string());
            hops.push("10.0.0.1".to_string());
            let header = hops.join(", ");
            prop_assert_eq!(
                client_addr(ip("10.0.0.2"), &trusted, [header.as_str()], NONE),
                client.to_canonical()
            );
        }

        #[test]
        fn forwarded_parsing_never_panics(line in ".{0,120}") {
            let trusted = nets(&["0.0.0.0/0", "::/0"]);
            let _ = client_addr(ip("10.0.0.2"), &trusted, NONE, [line.as_str()]);
        }

        #[test]
        fn a_forwarded_address_round_trips(addr in any_ip(), port in any::<u16>()) {
            let written = match addr {
                IpAddr::V4(v4) => format!("for={v4}:{port}"),
                IpAddr::V6(v6) => format!("for=\"[{v6}]:{port}\""),
            };
            let trusted = nets(&["127.0.0.0/8"]);
            prop_assume!(!is_trusted(addr.to_canonical(), &trusted));
            prop_assert_eq!(
                client_addr(ip("127.0.0.1"), &trusted, NONE, [written.as_str()]),
                addr.to_canonical()
            );
        }
    }
}
