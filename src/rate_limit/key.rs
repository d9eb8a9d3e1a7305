//! Client keys: who a rate-limit bucket belongs to. `ip:<addr>` for anonymous requests
//! (IPv6 clients keyed by their /64, since one subscriber usually holds a whole /64),
//! `user:<sub>` for requests with a valid token. Pure: no IO.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// The longest token subject accepted as a user key, in bytes.
pub const MAX_SUBJECT_LEN: usize = 256;

/// Why a client key could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{0:?} is not an IP address")]
    BadAddress(String),
    #[error("a user key must not be empty")]
    EmptySubject,
    #[error("a user key is at most {MAX_SUBJECT_LEN} bytes")]
    SubjectTooLong,
    #[error("a user key must not contain control characters")]
    ControlCharacter,
    #[error("{0:?} is not a client kind (ip or user)")]
    BadKind(String),
}

/// The address part of an `ip:` key: an IPv4 address, or the /64 network of an IPv6 one.
///
/// Invariant: the IPv6 variant holds only the upper 64 bits, so two addresses of one /64
/// are the same key; IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpKey {
    V4(u32),
    V6(u64),
}

impl IpKey {
    /// The key of one client address.
    pub fn from_addr(addr: IpAddr) -> IpKey {
        match addr.to_canonical() {
            IpAddr::V4(v4) => IpKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => IpKey::V6((u128::from(v6) >> 64) as u64),
        }
    }

    /// Parses an address as an operator writes it: `203.0.113.7`, `2001:db8::1`,
    /// `2001:db8::/64` (the form keys are shown in), or `[2001:db8::1]`.
    pub fn parse(s: &str) -> Result<IpKey, KeyError> {
        let trimmed = s.trim();
        let bare = trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or(trimmed);
        let bare = bare.strip_suffix("/64").unwrap_or(bare);
        bare.parse::<IpAddr>()
            .map(IpKey::from_addr)
            .map_err(|_| KeyError::BadAddress(s.to_string()))
    }

    /// The network address this key stands for (IPv6: the /64 with its host bits zero).
    pub fn network(self) -> IpAddr {
        match self {
            IpKey::V4(bits) => IpAddr::V4(Ipv4Addr::from(bits)),
            IpKey::V6(prefix) => IpAddr::V6(Ipv6Addr::from(u128::from(prefix) << 64)),
        }
    }
}

impl fmt::Display for IpKey {
    /// `203.0.113.7` or `2001:db8:1:2::/64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpKey::V4(_) => write!(f, "{}", self.network()),
            IpKey::V6(_) => write!(f, "{}/64", self.network()),
        }
    }
}

/// The subject of a valid token, as a `user:` key. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey(Arc<str>);

impl UserKey {
    /// Accepts a token subject: 1 to [`MAX_SUBJECT_LEN`] bytes, no control characters.
    pub fn parse(sub: &str) -> Result<UserKey, KeyError> {
        if sub.is_empty() {
            return Err(KeyError::EmptySubject);
        }
        if sub.len() > MAX_SUBJECT_LEN {
            return Err(KeyError::SubjectTooLong);
        }
        if sub.chars().any(char::is_control) {
            return Err(KeyError::ControlCharacter);
        }
        Ok(UserKey(Arc::from(sub)))
    }

    /// The subject.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which kind of bucket: anonymous (per address) or authenticated (per token subject).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Ip,
    User,
}

impl KeyKind {
    /// Parses the `{ip|user}` path segment of the admin endpoints.
    pub fn parse(s: &str) -> Result<KeyKind, KeyError> {
        match s {
            "ip" => Ok(KeyKind::Ip),
            "user" => Ok(KeyKind::User),
            other => Err(KeyError::BadKind(other.to_string())),
        }
    }

    /// `ip` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Ip => "ip",
            KeyKind::User => "user",
        }
    }
}

/// One client's bucket key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    Ip(IpKey),
    User(UserKey),
}

impl ClientKey {
    /// Parses a key from its kind and value, as the admin endpoints and the CLI get them.
    pub fn parse(kind: KeyKind, value: &str) -> Result<ClientKey, KeyError> {
        match kind {
            KeyKind::Ip => IpKey::parse(value).map(ClientKey::Ip),
            KeyKind::User => UserKey::parse(value).map(ClientKey::User),
        }
    }

    /// Parses the displayed form, `ip:<addr>` or `user:<sub>`.
    pub fn parse_prefixed(s: &str) -> Result<ClientKey, KeyError> {
        match s.split_once(':') {
            Some(("ip", rest)) => ClientKey::parse(KeyKind::Ip, rest),
            Some(("user", rest)) => ClientKey::parse(KeyKind::User, rest),
            Some((kind, _)) => Err(KeyError::BadKind(kind.to_string())),
            None => Err(KeyError::BadKind(s.to_string())),
        }
    }

    /// Which kind of key this is.
    pub fn kind(&self) -> KeyKind {
        match self {
            ClientKey::Ip(_) => KeyKind::Ip,
            ClientKey::User(_) => KeyKind::User,
        }
    }

    /// The Redis key holding this client's shared bucket: `rate_limit:ip:<addr>` or
    /// `rate_limit:user:<sub>`.
    pub fn redis_key(&self) -> String {
        format!("rate_limit:{self}")
    }
}

impl fmt::Display for ClientKey {
    /// `ip:203.0.113.7`, `ip:2001:db8::/64` or `user:alice`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientKey::Ip(ip) => write!(f, "ip:{ip}"),
            ClientKey::User(user) => write!(f, "user:{user}"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_key() {
        let a = IpKey::parse("2001:db8:1:2::1").unwrap();
        let b = IpKey::parse("2001:db8:1:2:ffff:ffff:ffff:ffff").unwrap();
        let c = IpKey::parse("2001:db8:1:3::1").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_keyed_as_ipv4() {
        assert_eq!(
            IpKey::parse("::ffff:203.0.113.7").unwrap(),
            IpKey::parse("203.0.113.7").unwrap()
        );
    }

    #[test]
    fn keys_print_in_the_redis_form_of_the_spec() {
        let ip = ClientKey::parse(KeyKind::Ip, "203.0.113.7").unwrap();
        assert_eq!(ip.redis_key(), "rate_limit:ip:203.0.113.7");
        let user = ClientKey::parse(KeyKind::User, "alice").unwrap();
        assert_eq!(user.redis_key(), "rate_limit:user:alice");
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert_eq!(
            IpKey::parse("not-an-ip"),
            Err(KeyError::BadAddress("not-an-ip".into()))
        );
        assert_eq!(UserKey::parse(""), Err(KeyError::EmptySubject));
        assert_eq!(UserKey::parse("a\nb"), Err(KeyError::ControlCharacter));
        assert_eq!(
            UserKey::parse(&"x".repeat(MAX_SUBJECT_LEN + 1)),
            Err(KeyError::SubjectTooLong)
        );
        assert_eq!(
            KeyKind::parse("token"),
            Err(KeyError::BadKind("token".into()))
        );
        assert!(ClientKey::parse_prefixed("nokind").is_err());
    }

    #[test]
    fn bracketed_and_slash_64_forms_parse() {
        let plain = IpKey::parse("2001:db8::1").unwrap();
        assert_eq!(IpKey::parse("[2001:db8::1]").unwrap(), plain);
        assert_eq!(IpKey::parse("2001:db8::/64").unwrap(), plain);
    }

    /// Any IPv4 or IPv6 address (shared with the forwarded-header properties).
    pub(crate) fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            any::<u128>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        ]
    }

    proptest! {
        #[test]
        fn a_displayed_key_parses_back_to_itself(addr in any_ip()) {
            let key = ClientKey::Ip(IpKey::from_addr(addr));
            prop_assert_eq!(ClientKey::parse_prefixed(&key.to_string()).unwrap(), key);
        }

        #[test]
        fn masking_keeps_exactly_the_upper_64_bits(bits in any::<u128>(), host in any::<u64>()) {
            let addr = Ipv6Addr::from(bits);
            prop_assume!(addr.to_ipv4_mapped().is_none());
            let sibling = Ipv6Addr::from((bits & !u128::from(u64::MAX)) | u128::from(host));
            prop_assume!(sibling.to_ipv4_mapped().is_none());
            prop_assert_eq!(
                IpKey::from_addr(IpAddr::V6(addr)),
                IpKey::from_addr(IpAddr::V6(sibling))
            );
            let network = IpKey::from_addr(IpAddr::V6(addr)).network();
            prop_assert_eq!(network, IpAddr::V6(Ipv6Addr::from(bits & !u128::from(u64::MAX))));
        }

        #[test]
        fn user_keys_round_trip(sub in "[^\\p{Cc}]{1,64}") {
            let key = ClientKey::parse(KeyKind::User, &sub).unwrap();
            prop_assert_eq!(ClientKey::parse_prefixed(&key.to_string()).unwrap(), key);
        }

        #[test]
        fn parsing_never_panics(s in ".{0,80}") {
            let _ = ClientKey::parse_prefixed(&s);
            let _ = IpKey::parse(&s);
        }
    }
}
