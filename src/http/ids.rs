//! Ids as handlers receive them (a path segment, a query value, a body field): a
//! [`IdRef`] resolved to one of Amber's ids. Amber's own ids resolve to themselves; a
//! foreign id (one an imported record had in the original system) resolves through the
//! store's record of foreign ids.

use crate::error::AppError;
use crate::shape::id::IdRef;
use crate::storage::{Entity, StoreReader};

/// A leader id no leader has: the feed index refuses leader ids beyond 22 bits, so the
/// store never assigns it. A query for an unknown foreign leader asks for this one.
pub const NO_LEADER: u64 = u64::MAX;

/// Amber's id for `id`, or `None` when it names nothing Amber knows (a foreign id that
/// was never imported). A local id is returned as it is; whether it exists is the
/// caller's question.
pub fn resolve(reader: &StoreReader, entity: Entity, id: &IdRef) -> Result<Option<u64>, AppError> {
    match id {
        IdRef::Local(n) => Ok(Some(*n)),
        IdRef::Foreign(s) => Ok(reader.foreign_id(entity, s)?),
    }
}

/// The id in a path: a 404 when it is not an id or names nothing.
pub fn path_id(reader: &StoreReader, raw: &str, entity: Entity) -> Result<u64, AppError> {
    let not_found = || AppError::NotFound(format!("{} {raw:?}", entity.name()));
    let id = IdRef::parse(raw).map_err(|_| not_found())?;
    resolve(reader, entity, &id)?.ok_or_else(not_found)
}

/// A body's id of a record that must exist (the `leaderId` of a new post): a 404 when a
/// foreign id names nothing.
pub fn body_id(reader: &StoreReader, id: &IdRef, entity: Entity) -> Result<u64, AppError> {
    resolve(reader, entity, id)?
        .ok_or_else(|| AppError::NotFound(format!("{} {id}", entity.name())))
}

/// A query's leader filter: the leader's id, or [`NO_LEADER`] (so the answer is empty)
/// when it names nothing.
pub fn query_leader(reader: &StoreReader, raw: &str, name: &str) -> Result<u64, AppError> {
    let id = IdRef::parse(raw).map_err(|e| {
        AppError::bad_request(
            "invalid_query",
            format!("{name} must be a leader id: {e}, got {raw:?}"),
        )
    })?;
    Ok(resolve(reader, Entity::Leader, &id)?.unwrap_or(NO_LEADER))
}
