//! Keyset paging by `(key, id)`: the rows after a position in the list's order, so a page
//! never skips or repeats a row however the rows before it change.
use sea_orm::sea_query::{Expr, IntoCondition, SimpleExpr};
use sea_orm::{ColumnTrait, Condition, Value};
use uuid::Uuid;

/// Rows after `(key, id)` in ascending (`descending == false`) or descending order of `key`,
/// then `id`: `key > k OR (key = k AND id > i)`, or with `<` for descending.
pub fn after<C: ColumnTrait>(
    key_col: C,
    id_col: C,
    key: impl Into<Value>,
    id: Uuid,
    descending: bool,
) -> Condition {
    let key: Value = key.into();
    let (past, past_id): (SimpleExpr, SimpleExpr) = if descending {
        (key_col.lt(key.clone()), Expr::col(id_col).lt(id))
    } else {
        (key_col.gt(key.clone()), Expr::col(id_col).gt(id))
    };
    Condition::any()
        .add(past)
        .add(Expr::col(key_col).eq(key).and(past_id).into_condition())
}

/// Cut `rows` (fetched with `first + 1` as the limit) to the page, and say whether more follow.
pub fn take<T>(mut rows: Vec<T>, first: u64) -> (Vec<T>, bool) {
    let has_next = rows.len() as u64 > first;
    rows.truncate(first as usize);
    (rows, has_next)
}
