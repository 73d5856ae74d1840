//! Walks the chain from the first row and names the first broken link.
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::row_hash;
use crate::error::AppResult;
use entity::{audit_head, audit_log};

#[derive(Debug, PartialEq, Eq)]
pub enum VerifyReport {
    /// Every row links to its predecessor, every hash matches, and the head is the tip.
    Intact { rows: u64 },
    /// The first row (by sequence number) where the chain does not hold, and why.
    Broken { seq: i64, reason: String },
}

const PAGE: u64 = 5_000;

/// Verify the whole chain. `progress` is called with the number of rows checked so far.
pub async fn verify_chain(
    db: &impl ConnectionTrait,
    mut progress: impl FnMut(u64),
) -> AppResult<VerifyReport> {
    let mut prev_hash = vec![0u8; 32];
    let mut expected_seq: i64 = 1;
    let mut checked = 0u64;
    loop {
        let page = audit_log::Entity::find()
            .filter(audit_log::Column::Seq.gte(expected_seq))
            .order_by_asc(audit_log::Column::Seq)
            .limit(PAGE)
            .all(db)
            .await?;
        let last_page = (page.len() as u64) < PAGE;
        for row in page {
            if row.seq != expected_seq {
                return Ok(VerifyReport::Broken {
                    seq: expected_seq,
                    reason: format!("row {expected_seq} is missing (next row is {})", row.seq),
                });
            }
            if row.prev_hash != prev_hash {
                return Ok(VerifyReport::Broken {
                    seq: row.seq,
                    reason: "prev_hash does not match the previous row's hash".into(),
                });
            }
            if row_hash(&row)[..] != row.hash[..] {
                return Ok(VerifyReport::Broken {
                    seq: row.seq,
                    reason: "stored hash does not match the row's contents".into(),
                });
            }
            prev_hash = row.hash;
            expected_seq += 1;
            checked += 1;
        }
        progress(checked);
        if last_page {
            break;
        }
    }
    let head = audit_head::Entity::find_by_id(1).one(db).await?;
    match head {
        Some(h) if h.seq == expected_seq - 1 && h.hash == prev_hash => {
            Ok(VerifyReport::Intact { rows: checked })
        }
        Some(h) => Ok(VerifyReport::Broken {
            seq: h.seq.max(expected_seq),
            reason: format!(
                "head says the chain ends at row {} but the rows end at {}",
                h.seq,
                expected_seq - 1
            ),
        }),
        None => Ok(VerifyReport::Broken {
            seq: 0,
            reason: "audit_head row is missing".into(),
        }),
    }
}
