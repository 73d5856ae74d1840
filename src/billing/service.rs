//! Statements, the ledger, payments and coverages: the rules and all database access of
//! the domain. Services take what `access::billing` granted ([`BillingGrant`]).
//!
//! Money is integer cents. A statement's balance is the sum of its ledger entries, never a
//! stored number. A payment attempt is written (PENDING) in a write transaction before the
//! gateway is called, and that transaction holds the audit head's lock like every write
//! (writers are serialised), so two payments on one statement cannot both see the same
//! balance: the second sees the first one's reservation and may not overdraw. The gateway
//! gets the attempt's id as its idempotency key: a retry, or reconciliation asking about a
//! lost answer, can never charge twice.
use chrono::{NaiveDate, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::gateway::{Charge, PaymentGateway};
use crate::access::billing::BillingGrant;
use crate::audit::{AuditEvent, WriteTxn};
use crate::crypto::{KeyRing, Slot};
use crate::db::keyset;
use crate::error::{AppError, AppResult};
use crate::identity::Viewer;
use entity::{billing_statements, coverages, ledger_entries, payments};

/// One billed service. Sealed with its statement.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    pub service_date: NaiveDate,
    pub description: String,
    /// A CPT-like procedure code.
    pub code: String,
    pub amount_cents: i64,
}

/// A statement with its lines opened.
#[derive(Clone, Debug)]
pub struct Statement {
    pub row: billing_statements::Model,
    pub lines: Vec<LineItem>,
}

fn slot<'a>(table: &'static str, column: &'static str, row: &'a Uuid) -> Slot<'a> {
    Slot { table, column, row }
}

/// Line items sealed for statement `id` (demo data writes rows directly).
pub fn seal_lines(keys: &KeyRing, id: &Uuid, lines: &[LineItem]) -> AppResult<Vec<u8>> {
    let json = serde_json::to_string(lines)
        .map_err(|_| AppError::internal_msg("statement lines did not serialise"))?;
    keys.seal_str(slot("billing_statements", "lines", id), &json)
}

/// A member id sealed for coverage `id`.
pub fn seal_member_id(keys: &KeyRing, id: &Uuid, member_id: &str) -> AppResult<Vec<u8>> {
    keys.seal_str(slot("coverages", "member_id", id), member_id)
}

pub fn open_statement(keys: &KeyRing, row: billing_statements::Model) -> AppResult<Statement> {
    let json = keys.open_str(slot("billing_statements", "lines", &row.id), &row.lines_enc)?;
    // Never log the value: it is PHI.
    let lines = serde_json::from_str(&json)
        .map_err(|_| AppError::internal_msg("stored statement lines do not parse"))?;
    Ok(Statement { row, lines })
}

/// What ADMIN issues.
#[derive(Clone, Debug)]
pub struct NewStatement {
    pub issued_on: NaiveDate,
    pub due_on: NaiveDate,
    pub currency: String,
    pub lines: Vec<LineItem>,
}

/// Issue a statement: the snapshot and its CHARGE in the ledger, in the caller's
/// transaction.
pub async fn issue(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    grant: &BillingGrant,
    new: NewStatement,
) -> AppResult<Statement> {
    administer(grant)?;
    let total: i64 = new
        .lines
        .iter()
        .try_fold(0i64, |acc, l| acc.checked_add(l.amount_cents))
        .ok_or(AppError::validation(
            "lines",
            "add up to more than can be billed",
        ))?;
    let id = Uuid::new_v4();
    let now = Utc::now();
    let row = billing_statements::Model {
        id,
        patient_id: grant.patient_id(),
        issued_on: new.issued_on,
        due_on: new.due_on,
        currency: new.currency,
        total_cents: total,
        lines_enc: seal_lines(keys, &id, &new.lines)?,
        status: "OPEN".into(),
        void_reason_enc: None,
        created_by: viewer.user_id,
        created_at: now,
    };
    billing_statements::Entity::insert(billing_statements::ActiveModel::from(row.clone()))
        .exec_without_returning(tx.conn())
        .await?;
    entry(tx, viewer.user_id, &row, "CHARGE", total, None, None).await?;
    tx.audit(
        AuditEvent::by(viewer, "statement.issue", "billing_statement")
            .scope(grant)
            .resource(id.to_string())
            .detail(serde_json::json!({ "totalCents": total, "lines": new.lines.len() })),
    );
    Ok(Statement {
        row,
        lines: new.lines,
    })
}

fn administer(grant: &BillingGrant) -> AppResult<()> {
    if grant.may_administer() {
        Ok(())
    } else {
        Err(AppError::Forbidden("only an administrator may do this"))
    }
}

async fn entry(
    tx: &WriteTxn,
    by: Uuid,
    st: &billing_statements::Model,
    kind: &'static str,
    amount_cents: i64,
    payment: Option<Uuid>,
    reason: Option<(&KeyRing, &str)>,
) -> AppResult<()> {
    let id = Uuid::new_v4();
    let reason_enc = reason
        .map(|(keys, r)| keys.seal_str(slot("ledger_entries", "reason", &id), r))
        .transpose()?;
    ledger_entries::Entity::insert(ledger_entries::ActiveModel {
        id: Set(id),
        statement_id: Set(st.id),
        patient_id: Set(st.patient_id),
        kind: Set(kind.into()),
        amount_cents: Set(amount_cents),
        payment_id: Set(payment),
        created_by: Set(by),
        created_at: Set(Utc::now()),
        reason_enc: Set(reason_enc),
    })
    .exec_without_returning(tx.conn())
    .await?;
    Ok(())
}

/// The statement's balance: the sum of its ledger.
pub async fn balance(db: &impl ConnectionTrait, statement: Uuid) -> AppResult<i64> {
    let sum: Option<i64> = ledger_entries::Entity::find()
        .filter(ledger_entries::Column::StatementId.eq(statement))
        .select_only()
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT)"),
            "b",
        )
        .into_tuple::<i64>()
        .one(db)
        .await?;
    Ok(sum.unwrap_or(0))
}

/// Sum of the still-PENDING payments on a statement: reserved until they settle.
async fn reserved(db: &impl ConnectionTrait, statement: Uuid) -> AppResult<i64> {
    let sum: Option<i64> = payments::Entity::find()
        .filter(payments::Column::StatementId.eq(statement))
        .filter(payments::Column::Status.eq("PENDING"))
        .select_only()
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT)"),
            "r",
        )
        .into_tuple::<i64>()
        .one(db)
        .await?;
    Ok(sum.unwrap_or(0))
}

/// A statement of the grant's patient.
pub async fn one(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    grant: &BillingGrant,
    id: Uuid,
) -> AppResult<Statement> {
    let row = billing_statements::Entity::find_by_id(id)
        .filter(billing_statements::Column::PatientId.eq(grant.patient_id()))
        .one(db)
        .await?
        .ok_or(AppError::NotFound)?;
    open_statement(keys, row)
}

/// Which patient a statement is about (to decide the grant before reading it).
pub async fn patient_of_statement(db: &impl ConnectionTrait, id: Uuid) -> AppResult<Option<Uuid>> {
    Ok(billing_statements::Entity::find_by_id(id)
        .select_only()
        .column(billing_statements::Column::PatientId)
        .into_tuple()
        .one(db)
        .await?)
}

/// Which patient a payment is about.
pub async fn patient_of_payment(db: &impl ConnectionTrait, id: Uuid) -> AppResult<Option<Uuid>> {
    Ok(payments::Entity::find_by_id(id)
        .select_only()
        .column(payments::Column::PatientId)
        .into_tuple()
        .one(db)
        .await?)
}

/// Which patient a coverage is about.
pub async fn patient_of_coverage(db: &impl ConnectionTrait, id: Uuid) -> AppResult<Option<Uuid>> {
    Ok(coverages::Entity::find_by_id(id)
        .select_only()
        .column(coverages::Column::PatientId)
        .into_tuple()
        .one(db)
        .await?)
}

/// A position in a patient's statements: newest issue first, then id.
pub type Position = (NaiveDate, Uuid);

/// A page of the grant's patient's statements, newest first.
pub async fn page(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    grant: &BillingGrant,
    status: Option<&'static str>,
    first: u64,
    after: Option<Position>,
) -> AppResult<(Vec<Statement>, bool)> {
    let mut q = billing_statements::Entity::find()
        .filter(billing_statements::Column::PatientId.eq(grant.patient_id()));
    if let Some(s) = status {
        q = q.filter(billing_statements::Column::Status.eq(s));
    }
    if let Some((on, id)) = after {
        q = q.filter(keyset::after(
            billing_statements::Column::IssuedOn,
            billing_statements::Column::Id,
            on,
            id,
            true,
        ));
    }
    let rows = q
        .order_by_desc(billing_statements::Column::IssuedOn)
        .order_by_desc(billing_statements::Column::Id)
        .limit(first + 1)
        .all(db)
        .await?;
    let (rows, more) = keyset::take(rows, first);
    let list = rows
        .into_iter()
        .map(|r| open_statement(keys, r))
        .collect::<AppResult<Vec<_>>>()?;
    Ok((list, more))
}

/// The payments made on a statement, oldest first.
pub async fn payments_of(
    db: &impl ConnectionTrait,
    statement: Uuid,
) -> AppResult<Vec<payments::Model>> {
    Ok(payments::Entity::find()
        .filter(payments::Column::StatementId.eq(statement))
        .order_by_asc(payments::Column::CreatedAt)
        .all(db)
        .await?)
}

/// Void an OPEN statement that has no successful payment: it is VOID and its balance is
/// adjusted to zero.
pub async fn void(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    grant: &BillingGrant,
    id: Uuid,
    reason: &str,
) -> AppResult<Statement> {
    administer(grant)?;
    let st = one(tx.conn(), keys, grant, id).await?;
    if st.row.status != "OPEN" {
        return Err(AppError::Conflict("only an OPEN statement can be voided"));
    }
    let paid = payments::Entity::find()
        .filter(payments::Column::StatementId.eq(id))
        .filter(payments::Column::Status.is_in(["SUCCEEDED", "PENDING"]))
        .count(tx.conn())
        .await?;
    if paid > 0 {
        return Err(AppError::Conflict(
            "the statement has payments: refund them before voiding it",
        ));
    }
    let balance = balance(tx.conn(), id).await?;
    entry(
        tx,
        viewer.user_id,
        &st.row,
        "ADJUSTMENT",
        -balance,
        None,
        None,
    )
    .await?;
    let sealed = keys.seal_str(slot("billing_statements", "void_reason", &id), reason)?;
    billing_statements::Entity::update_many()
        .col_expr(billing_statements::Column::Status, Expr::value("VOID"))
        .col_expr(
            billing_statements::Column::VoidReasonEnc,
            Expr::value(Some(sealed.clone())),
        )
        .filter(billing_statements::Column::Id.eq(id))
        .exec(tx.conn())
        .await?;
    tx.audit(
        AuditEvent::by(viewer, "statement.void", "billing_statement")
            .scope(grant)
            .resource(id.to_string())
            .detail(serde_json::json!({ "adjustedCents": -balance })),
    );
    Ok(Statement {
        row: billing_statements::Model {
            status: "VOID".into(),
            void_reason_enc: Some(sealed),
            ..st.row
        },
        lines: st.lines,
    })
}

// ---------------------------------------------------------------------------------------
// Payments

/// A payment request: what the fingerprint covers.
pub struct PaymentRequest<'a> {
    pub statement_id: Uuid,
    pub amount_cents: i64,
    pub token: &'a str,
    pub key: &'a str,
}

impl std::fmt::Debug for PaymentRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentRequest")
            .field("statement_id", &self.statement_id)
            .field("amount_cents", &self.amount_cents)
            .finish_non_exhaustive()
    }
}

/// Longest idempotency key and payment method token accepted.
pub const KEY_MAX: usize = 200;

/// Record a payment attempt (PENDING), or find the one this key already made. Returns the
/// attempt and whether it is new (then the caller charges it).
pub async fn attempt(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    grant: &BillingGrant,
    req: &PaymentRequest<'_>,
) -> AppResult<(payments::Model, bool)> {
    if !grant.may_act() {
        return Err(AppError::Forbidden(
            "only the patient or an administrator may pay a statement",
        ));
    }
    let key = keys.blind_index("payments", "key", req.key);
    let fingerprint = keys.blind_index(
        "payments",
        "request",
        &format!("{}|{}|{}", req.statement_id, req.amount_cents, req.token),
    );
    let prior = payments::Entity::find()
        .filter(payments::Column::ActorId.eq(viewer.user_id))
        .filter(payments::Column::KeyBidx.eq(key.clone()))
        .one(tx.conn())
        .await?;
    if let Some(p) = prior {
        if p.fingerprint_bidx != fingerprint || p.patient_id != grant.patient_id() {
            return Err(AppError::Conflict(
                "this idempotency key was already used for a different payment; use a new key",
            ));
        }
        if p.status == "PENDING" {
            return Err(AppError::Conflict(
                "a payment with this idempotency key is still in progress; retry in a moment",
            ));
        }
        tx.audit(
            AuditEvent::by(viewer, "payment.read", "payment")
                .scope(grant)
                .resource(p.id.to_string())
                .detail(serde_json::json!({ "idempotentReplay": true })),
        );
        return Ok((p, false));
    }
    if req.amount_cents <= 0 {
        return Err(AppError::validation("amountCents", "must be positive"));
    }
    let st = billing_statements::Entity::find_by_id(req.statement_id)
        .filter(billing_statements::Column::PatientId.eq(grant.patient_id()))
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    if st.status != "OPEN" {
        return Err(AppError::validation(
            "statementId",
            "is not open for payment",
        ));
    }
    let available = balance(tx.conn(), st.id).await? - reserved(tx.conn(), st.id).await?;
    if req.amount_cents > available {
        return Err(AppError::validation(
            "amountCents",
            "is more than the statement's balance",
        ));
    }
    let id = Uuid::new_v4();
    let row = payments::Model {
        id,
        statement_id: st.id,
        patient_id: st.patient_id,
        actor_id: viewer.user_id,
        key_bidx: key,
        fingerprint_bidx: fingerprint,
        amount_cents: req.amount_cents,
        status: "PENDING".into(),
        token_enc: keys.seal_str(slot("payments", "token", &id), req.token)?,
        gateway_ref: None,
        refunded_cents: 0,
        created_at: Utc::now(),
        settled_at: None,
    };
    payments::Entity::insert(payments::ActiveModel::from(row.clone()))
        .exec_without_returning(tx.conn())
        .await
        .map_err(|e| match e {
            // Another request with this key committed first.
            DbErr::Exec(_) | DbErr::Query(_) => AppError::Conflict(
                "a payment with this idempotency key is still in progress; retry in a moment",
            ),
            e => AppError::from(e),
        })?;
    tx.audit(
        AuditEvent::by(viewer, "payment.create", "payment")
            .scope(grant)
            .resource(id.to_string())
            .detail(serde_json::json!({
                "statementId": st.id.to_string(),
                "amountCents": req.amount_cents,
            })),
    );
    Ok((row, true))
}

/// Charge a new attempt through the gateway (outside any transaction) and settle it with
/// what the gateway said; a lost answer leaves it PENDING for reconciliation.
pub async fn charge(
    db: &sea_orm::DatabaseConnection,
    keys: &KeyRing,
    gateway: &dyn PaymentGateway,
    viewer: &Viewer,
    p: payments::Model,
) -> AppResult<payments::Model> {
    let token = keys.open_str(slot("payments", "token", &p.id), &p.token_enc)?;
    let answer = match gateway
        .charge(&p.id.to_string(), p.amount_cents, &token)
        .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, payment = %p.id, "gateway call failed; left PENDING");
            None
        }
    };
    match answer {
        Some(c) => settle(db, Some(viewer), p, c).await,
        None => Ok(p),
    }
}

/// Apply the gateway's answer to a PENDING attempt, once: SUCCEEDED puts the payment in the
/// ledger (and a statement paid in full becomes PAID), DECLINED releases the reservation.
/// `viewer` is who paid, or `None` for reconciliation (a system action).
pub async fn settle(
    db: &sea_orm::DatabaseConnection,
    viewer: Option<&Viewer>,
    p: payments::Model,
    answer: Charge,
) -> AppResult<payments::Model> {
    let by = viewer.map(|v| v.user_id).unwrap_or(p.actor_id);
    let mut tx = WriteTxn::begin(db).await?;
    let (status, reference) = match &answer {
        Charge::Approved { reference } => ("SUCCEEDED", Some(reference.clone())),
        Charge::Declined => ("DECLINED", None),
    };
    let now = Utc::now();
    let moved = payments::Entity::update_many()
        .col_expr(payments::Column::Status, Expr::value(status))
        .col_expr(payments::Column::GatewayRef, Expr::value(reference.clone()))
        .col_expr(payments::Column::SettledAt, Expr::value(Some(now)))
        .filter(payments::Column::Id.eq(p.id))
        .filter(payments::Column::Status.eq("PENDING"))
        .exec(tx.conn())
        .await?;
    if moved.rows_affected == 0 {
        // Settled meanwhile (reconciliation and the request racing): keep that result.
        drop(tx);
        return payments::Entity::find_by_id(p.id)
            .one(db)
            .await?
            .ok_or(AppError::NotFound);
    }
    if status == "SUCCEEDED" {
        let st = billing_statements::Entity::find_by_id(p.statement_id)
            .one(tx.conn())
            .await?
            .ok_or_else(|| AppError::internal_msg("payment without its statement"))?;
        entry(&tx, by, &st, "PAYMENT", -p.amount_cents, Some(p.id), None).await?;
        if balance(tx.conn(), st.id).await? <= 0 {
            billing_statements::Entity::update_many()
                .col_expr(billing_statements::Column::Status, Expr::value("PAID"))
                .filter(billing_statements::Column::Id.eq(st.id))
                .filter(billing_statements::Column::Status.eq("OPEN"))
                .exec(tx.conn())
                .await?;
        }
    }
    let ev = match viewer {
        Some(v) => AuditEvent::by(v, "payment.settle", "payment"),
        None => AuditEvent::new("payment.reconcile", "payment"),
    };
    tx.audit(
        ev.patient(p.patient_id)
            .resource(p.id.to_string())
            .detail(serde_json::json!({ "status": status })),
    );
    tx.commit().await?;
    Ok(payments::Model {
        status: status.into(),
        gateway_ref: reference,
        settled_at: Some(now),
        ..p
    })
}

/// What a reconciliation run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub succeeded: u64,
    pub declined: u64,
    pub still_pending: u64,
}

/// Settle PENDING attempts older than `min_age` from what the gateway says about them,
/// never charging again. One the gateway never saw, older than `never_seen_after`, was not
/// charged: it is DECLINED.
pub async fn reconcile(
    db: &sea_orm::DatabaseConnection,
    gateway: &dyn PaymentGateway,
    min_age: chrono::TimeDelta,
    never_seen_after: chrono::TimeDelta,
) -> AppResult<Reconciled> {
    let now = Utc::now();
    let pending = payments::Entity::find()
        .filter(payments::Column::Status.eq("PENDING"))
        .filter(payments::Column::CreatedAt.lte(now - min_age))
        .order_by_asc(payments::Column::CreatedAt)
        .all(db)
        .await?;
    let mut out = Reconciled::default();
    for p in pending {
        let age = now - p.created_at;
        let answer = match gateway.lookup(&p.id.to_string()).await? {
            Some(a) => a,
            None if age >= never_seen_after => Charge::Declined,
            None => {
                out.still_pending += 1;
                continue;
            }
        };
        let settled = settle(db, None, p, answer).await?;
        match settled.status.as_str() {
            "SUCCEEDED" => out.succeeded += 1,
            "DECLINED" => out.declined += 1,
            _ => out.still_pending += 1,
        }
    }
    Ok(out)
}

/// Refund part or all of a SUCCEEDED payment (ADMIN): a REFUND in the ledger; a statement
/// that owes again is OPEN again.
pub async fn refund(
    tx: &mut WriteTxn,
    viewer: &Viewer,
    grant: &BillingGrant,
    keys: &KeyRing,
    payment: Uuid,
    amount_cents: i64,
    reason: &str,
) -> AppResult<payments::Model> {
    administer(grant)?;
    let p = payments::Entity::find_by_id(payment)
        .filter(payments::Column::PatientId.eq(grant.patient_id()))
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    if p.status != "SUCCEEDED" {
        return Err(AppError::Conflict(
            "only a SUCCEEDED payment can be refunded",
        ));
    }
    if amount_cents <= 0 {
        return Err(AppError::validation("amountCents", "must be positive"));
    }
    if amount_cents > p.amount_cents - p.refunded_cents {
        return Err(AppError::validation(
            "amountCents",
            "is more than what is left of the payment",
        ));
    }
    let st = billing_statements::Entity::find_by_id(p.statement_id)
        .one(tx.conn())
        .await?
        .ok_or_else(|| AppError::internal_msg("payment without its statement"))?;
    let why = Some((keys, reason));
    entry(
        tx,
        viewer.user_id,
        &st,
        "REFUND",
        amount_cents,
        Some(p.id),
        why,
    )
    .await?;
    payments::Entity::update_many()
        .col_expr(
            payments::Column::RefundedCents,
            Expr::col(payments::Column::RefundedCents).add(amount_cents),
        )
        .filter(payments::Column::Id.eq(p.id))
        .exec(tx.conn())
        .await?;
    if st.status == "PAID" {
        billing_statements::Entity::update_many()
            .col_expr(billing_statements::Column::Status, Expr::value("OPEN"))
            .filter(billing_statements::Column::Id.eq(st.id))
            .exec(tx.conn())
            .await?;
    }
    tx.audit(
        AuditEvent::by(viewer, "payment.refund", "payment")
            .scope(grant)
            .resource(p.id.to_string())
            .detail(serde_json::json!({ "amountCents": amount_cents })),
    );
    Ok(payments::Model {
        refunded_cents: p.refunded_cents + amount_cents,
        ..p
    })
}

// ---------------------------------------------------------------------------------------
// Coverage

/// A coverage with its sealed values opened.
#[derive(Clone, Debug)]
pub struct Coverage {
    pub row: coverages::Model,
    pub member_id: String,
    pub group_number: Option<String>,
}

pub fn open_coverage(keys: &KeyRing, row: coverages::Model) -> AppResult<Coverage> {
    let member_id = keys.open_str(slot("coverages", "member_id", &row.id), &row.member_id_enc)?;
    let group_number = row
        .group_number_enc
        .as_deref()
        .map(|c| keys.open_str(slot("coverages", "group_number", &row.id), c))
        .transpose()?;
    Ok(Coverage {
        row,
        member_id,
        group_number,
    })
}

pub struct NewCoverage {
    pub payer: String,
    pub plan_name: String,
    pub member_id: String,
    pub group_number: Option<String>,
    pub relationship: &'static str,
    pub effective_from: NaiveDate,
    pub effective_to: Option<NaiveDate>,
}

pub async fn add_coverage(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    grant: &BillingGrant,
    new: NewCoverage,
) -> AppResult<Coverage> {
    if !grant.may_act() {
        return Err(AppError::Forbidden(
            "only the patient or an administrator may add a coverage",
        ));
    }
    let id = Uuid::new_v4();
    let row = coverages::Model {
        id,
        patient_id: grant.patient_id(),
        payer: new.payer,
        plan_name: new.plan_name,
        member_id_enc: seal_member_id(keys, &id, &new.member_id)?,
        group_number_enc: new
            .group_number
            .as_deref()
            .map(|g| keys.seal_str(slot("coverages", "group_number", &id), g))
            .transpose()?,
        relationship: new.relationship.into(),
        effective_from: new.effective_from,
        effective_to: new.effective_to,
        created_by: viewer.user_id,
        created_at: Utc::now(),
    };
    coverages::Entity::insert(coverages::ActiveModel::from(row.clone()))
        .exec_without_returning(tx.conn())
        .await?;
    tx.audit(
        AuditEvent::by(viewer, "coverage.create", "coverage")
            .scope(grant)
            .resource(id.to_string()),
    );
    Ok(Coverage {
        row,
        member_id: new.member_id,
        group_number: new.group_number,
    })
}

/// The grant's patient's coverages, latest effective first.
pub async fn coverages_of(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    grant: &BillingGrant,
) -> AppResult<Vec<Coverage>> {
    coverages::Entity::find()
        .filter(coverages::Column::PatientId.eq(grant.patient_id()))
        .order_by_desc(coverages::Column::EffectiveFrom)
        .all(db)
        .await?
        .into_iter()
        .map(|r| open_coverage(keys, r))
        .collect()
}

/// One coverage of the grant's patient.
pub async fn coverage(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    grant: &BillingGrant,
    id: Uuid,
) -> AppResult<Coverage> {
    let row = coverages::Entity::find_by_id(id)
        .filter(coverages::Column::PatientId.eq(grant.patient_id()))
        .one(db)
        .await?
        .ok_or(AppError::NotFound)?;
    open_coverage(keys, row)
}
