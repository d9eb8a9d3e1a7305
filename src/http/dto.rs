//! JSON that only the HTTP API answers. The shapes the API shares with backups and
//! notifications (leader, post, review, times) are `crate::shape`'s.

use serde::{Deserialize, Serialize};

/// `{"success": true}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Success {
    pub success: bool,
}
