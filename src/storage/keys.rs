//! Key encoding for Amber's one sled tree. Every key starts with a one-byte key space;
//! integers are big-endian so sled's byte order is numeric order. Pure, no IO.

use crate::domain::post::{Platform, PostKind};

/// `L` + leader id → leader record.
pub const LEADER: u8 = b'L';
/// `P` + post id → post record.
pub const POST: u8 = b'P';
/// `T` + timestamp + post id → leader id + platform code + kind code: the time index.
pub const TIME: u8 = b'T';
/// `D` + platform code + external id → post id: the dedup index.
pub const DEDUP: u8 = b'D';
/// `R` + review id → review item.
pub const REVIEW: u8 = b'R';
/// `r` + post id → review id: finds a post's review item when the post goes.
pub const REVIEW_BY_POST: u8 = b'r';
/// `C` + name → u64 counter.
pub const COUNTER: u8 = b'C';
/// `M` + name → small metadata values (schema version, id sequences, flags).
pub const META: u8 = b'M';
/// `U` + leader id → cached X user id of the leader's handle (`handle\0user_id`).
pub const X_USER: u8 = b'U';
/// `J` + sequence number → the feed-index entries one change removed and added: the
/// index journal replayed after the last index snapshot at start-up.
pub const JOURNAL: u8 = b'J';
/// `N` + leader id → the newest X post id stored for the leader (`since_id`).
pub const NEWEST: u8 = b'N';

/// `Z` + platform code + external id → unix ms of the deletion: a tombstone. The post was
/// deleted at its source (X's `post.delete`); ingestion never stores it again.
pub const TOMBSTONE: u8 = b'Z';

/// `Z` key for (platform, external id).
pub fn tombstone_key(platform: Platform, external_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + external_id.len());
    k.push(TOMBSTONE);
    k.push(platform.code());
    k.extend_from_slice(external_id.as_bytes());
    k
}

/// `W` + target id → notification target record.
pub const NOTIFY_TARGET: u8 = b'W';
/// `Q` + target id + post id → event code (`n` new, `a` approved): the notification
/// outbox, one entry per target and post, written in the same batch as the post.
pub const OUTBOX: u8 = b'Q';

/// `Q` key of a target's entry for a post (sled order: by target, then post id).
pub fn outbox_key(target_id: u64, post_id: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = OUTBOX;
    k[1..9].copy_from_slice(&target_id.to_be_bytes());
    k[9..].copy_from_slice(&post_id.to_be_bytes());
    k
}

/// Decodes a `Q` key into (target id, post id).
pub fn parse_outbox_key(key: &[u8]) -> Option<(u64, u64)> {
    if key.len() != 17 || key[0] != OUTBOX {
        return None;
    }
    let target = u64::from_be_bytes(key[1..9].try_into().ok()?);
    let post = u64::from_be_bytes(key[9..17].try_into().ok()?);
    Some((target, post))
}

/// `F` + entity code + foreign id → Amber's id (u64 BE): the id an imported record had in
/// the system it came from (the original's UUIDs), so it still answers there.
pub const FOREIGN: u8 = b'F';

/// `F` key of a foreign id.
pub fn foreign_key(entity_code: u8, foreign: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + foreign.len());
    k.push(FOREIGN);
    k.push(entity_code);
    k.extend_from_slice(foreign.as_bytes());
    k
}

/// Maps an i64 onto u64 so that big-endian byte order equals numeric order.
pub fn ts_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`ts_bytes`].
pub fn ts_from_bytes(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// A key space plus a big-endian id.
pub fn id_key(space: u8, id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = space;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// Reads the id back from an [`id_key`].
pub fn id_from_key(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// `T` key of a post.
pub fn time_key(ts: i64, post_id: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = TIME;
    k[1..9].copy_from_slice(&ts_bytes(ts));
    k[9..].copy_from_slice(&post_id.to_be_bytes());
    k
}

/// Decodes a `T` key into (timestamp, post id).
pub fn parse_time_key(key: &[u8]) -> Option<(i64, u64)> {
    if key.len() != 17 || key[0] != TIME {
        return None;
    }
    let ts = ts_from_bytes(key[1..9].try_into().ok()?);
    let id = u64::from_be_bytes(key[9..17].try_into().ok()?);
    Some((ts, id))
}

/// Value stored under a `T` key: the leader, platform and post kind, so the feed index
/// can be rebuilt at start-up without reading posts. Values written before post kinds
/// existed have no kind byte: those posts are all `PostKind::Post`.
pub fn time_value(leader_id: u64, platform: Platform, kind: PostKind) -> [u8; 10] {
    let mut v = [0u8; 10];
    v[..8].copy_from_slice(&leader_id.to_be_bytes());
    v[8] = platform.code();
    v[9] = kind.code();
    v
}

/// Decodes a `T` value (with or without its kind byte).
pub fn parse_time_value(v: &[u8]) -> Option<(u64, Platform, PostKind)> {
    let kind = match v.len() {
        9 => PostKind::Post,
        10 if v[9] <= 3 => PostKind::from_code(v[9]),
        _ => return None,
    };
    let leader = u64::from_be_bytes(v[..8].try_into().ok()?);
    Some((leader, Platform::from_code(v[8])?, kind))
}

/// `D` key for (platform, external id).
pub fn dedup_key(platform: Platform, external_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + external_id.len());
    k.push(DEDUP);
    k.push(platform.code());
    k.extend_from_slice(external_id.as_bytes());
    k
}

/// A key under `C` or `M`.
pub fn named_key(space: u8, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(space);
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn time_keys_round_trip(ts in any::<i64>(), id in any::<u64>()) {
            prop_assert_eq!(parse_time_key(&time_key(ts, id)), Some((ts, id)));
        }

        #[test]
        fn time_key_byte_order_is_numeric_order(a in any::<(i64, u64)>(), b in any::<(i64, u64)>()) {
            prop_assert_eq!(time_key(a.0, a.1).cmp(&time_key(b.0, b.1)), a.cmp(&b));
        }

        #[test]
        fn outbox_keys_round_trip_in_post_order(t in any::<u64>(), a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(parse_outbox_key(&outbox_key(t, a)), Some((t, a)));
            prop_assert_eq!(outbox_key(t, a).cmp(&outbox_key(t, b)), a.cmp(&b));
        }

        #[test]
        fn id_keys_round_trip(id in any::<u64>()) {
            prop_assert_eq!(id_from_key(&id_key(POST, id)), Some(id));
        }
    }

    #[test]
    fn time_values_round_trip() {
        for p in Platform::ALL {
            for k in PostKind::ALL {
                assert_eq!(parse_time_value(&time_value(7, p, k)), Some((7, p, k)));
            }
        }
        assert_eq!(parse_time_value(&[0; 9]), None);
        assert_eq!(parse_time_value(&[0; 10]), None);
        // A value written before kinds existed: the leader and platform, no kind byte.
        let mut old = [0u8; 9];
        old[7] = 7;
        old[8] = Platform::News.code();
        assert_eq!(
            parse_time_value(&old),
            Some((7, Platform::News, PostKind::Post))
        );
        let mut bad_kind = time_value(7, Platform::X, PostKind::Post);
        bad_kind[9] = 4;
        assert_eq!(parse_time_value(&bad_kind), None);
    }
}
