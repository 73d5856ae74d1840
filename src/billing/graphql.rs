//! Billing over GraphQL: statements and their balances, payments, coverages and
//! eligibility. Every object exists only under an `access::billing` grant; every read is
//! audited (ids only), every write in its transaction.
use std::sync::Arc;

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::gateway::{PayerAdapter, PaymentGateway};
use super::service::{self, PaymentRequest};
use crate::access::billing::{BillingAction, BillingGrant, billing_grant};
use crate::audit::{AuditEvent, WriteTxn};
use crate::error::{AppError, AppResult};
use crate::graphql::context::{ContextExt, audit_read, audit_reads};
use crate::graphql::relay::{self, Connection, Edge, PageInfo, parse_id};
use crate::identity::Viewer;
use crate::input::{bounded_text, parse_reason};
use crate::state::AppState;
use entity::payments;

/// The payment gateway and the payer adapter this process uses (`startup` provides them).
#[derive(Clone)]
pub struct Gateways {
    pub payments: Arc<dyn PaymentGateway>,
    pub payer: Arc<dyn PayerAdapter>,
}

fn gateways(state: &AppState) -> AppResult<&Gateways> {
    state.service::<Gateways>()
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum StatementStatus {
    Open,
    Paid,
    Void,
}

crate::text_enum!(StatementStatus { Open => "OPEN", Paid => "PAID", Void => "VOID" });

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum PaymentStatus {
    Succeeded,
    Declined,
    /// The gateway's answer has not arrived (reconciliation settles it).
    Pending,
}

crate::text_enum!(PaymentStatus { Succeeded => "SUCCEEDED", Declined => "DECLINED", Pending => "PENDING" });

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum SubscriberRelationship {
    #[graphql(name = "SELF")]
    Myself,
    Spouse,
    Child,
    Other,
}

crate::text_enum!(SubscriberRelationship { Myself => "SELF", Spouse => "SPOUSE", Child => "CHILD", Other => "OTHER" });

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum EligibilityStatus {
    Active,
    Inactive,
    Unknown,
}

crate::text_enum!(EligibilityStatus { Active => "ACTIVE", Inactive => "INACTIVE", Unknown => "UNKNOWN" });

/// One billed service.
#[derive(SimpleObject)]
pub struct LineItem {
    pub service_date: NaiveDate,
    pub description: String,
    /// A CPT-like procedure code.
    pub code: String,
    pub amount_cents: i64,
}

/// A payment attempt. A declined card is a payment with status DECLINED, not an error.
pub struct Payment(payments::Model);

#[Object]
impl Payment {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn statement_id(&self) -> ID {
        ID(self.0.statement_id.to_string())
    }
    async fn status(&self) -> PaymentStatus {
        // A refunded payment still succeeded; `refundedCents` says how much came back.
        PaymentStatus::parse(&self.0.status).unwrap_or(PaymentStatus::Succeeded)
    }
    async fn amount_cents(&self) -> i64 {
        self.0.amount_cents
    }
    async fn refunded_cents(&self) -> i64 {
        self.0.refunded_cents
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// An immutable statement; its balance comes from the ledger.
pub struct BillingStatement {
    st: service::Statement,
    grant: Arc<BillingGrant>,
}

#[Object]
impl BillingStatement {
    async fn id(&self) -> ID {
        ID(self.st.row.id.to_string())
    }
    async fn patient_id(&self) -> ID {
        ID(self.st.row.patient_id.to_string())
    }
    async fn issued_on(&self) -> NaiveDate {
        self.st.row.issued_on
    }
    async fn due_on(&self) -> NaiveDate {
        self.st.row.due_on
    }
    /// ISO 4217.
    async fn currency(&self) -> &str {
        &self.st.row.currency
    }
    async fn total_cents(&self) -> i64 {
        self.st.row.total_cents
    }
    async fn status(&self) -> StatementStatus {
        StatementStatus::parse(&self.st.row.status).unwrap_or(StatementStatus::Open)
    }
    /// What is still owed: the sum of the statement's ledger.
    async fn balance_cents(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(service::balance(&ctx.state()?.db, self.st.row.id).await?)
    }
    async fn line_items(&self) -> Vec<LineItem> {
        self.st
            .lines
            .iter()
            .map(|l| LineItem {
                service_date: l.service_date,
                description: l.description.clone(),
                code: l.code.clone(),
                amount_cents: l.amount_cents,
            })
            .collect()
    }
    async fn payments(&self, ctx: &Context<'_>) -> Result<Vec<Payment>> {
        let _ = &self.grant;
        let list = service::payments_of(&ctx.state()?.db, self.st.row.id).await?;
        Ok(list.into_iter().map(Payment).collect())
    }
}

impl relay::Node for BillingStatement {
    const NAME: &'static str = "BillingStatement";
}

/// An insurance coverage.
pub struct Coverage(service::Coverage);

#[Object]
impl Coverage {
    async fn id(&self) -> ID {
        ID(self.0.row.id.to_string())
    }
    async fn payer(&self) -> &str {
        &self.0.row.payer
    }
    async fn plan_name(&self) -> &str {
        &self.0.row.plan_name
    }
    async fn member_id(&self) -> &str {
        &self.0.member_id
    }
    async fn group_number(&self) -> Option<&str> {
        self.0.group_number.as_deref()
    }
    async fn subscriber_relationship(&self) -> SubscriberRelationship {
        SubscriberRelationship::parse(&self.0.row.relationship)
            .unwrap_or(SubscriberRelationship::Other)
    }
    async fn effective_from(&self) -> NaiveDate {
        self.0.row.effective_from
    }
    async fn effective_to(&self) -> Option<NaiveDate> {
        self.0.row.effective_to
    }
}

/// What the payer says about a coverage today.
#[derive(SimpleObject)]
pub struct CoverageEligibility {
    pub status: EligibilityStatus,
    pub checked_at: DateTime<Utc>,
    pub plan_name: Option<String>,
    pub copay_cents: Option<i64>,
}

/// Statement cursors: `b1:<issued on>/<id>`.
const CURSOR: &str = "b1";

fn cursor(st: &service::Statement) -> String {
    relay::encode_cursor(CURSOR, format_args!("{}/{}", st.row.issued_on, st.row.id))
}

fn position(after: &str) -> AppResult<service::Position> {
    let raw: String = relay::decode_cursor(CURSOR, after)?;
    let bad = || AppError::validation("after", "is not a cursor returned by this API");
    let (on, id) = raw.split_once('/').ok_or_else(bad)?;
    Ok((
        on.parse().map_err(|_| bad())?,
        Uuid::parse_str(id).map_err(|_| bad())?,
    ))
}

fn read_event(viewer: &Viewer, grant: &BillingGrant, ids: Vec<String>, via: &str) -> AuditEvent {
    AuditEvent::by(viewer, "billing.read", "patient")
        .scope(grant)
        .resource(grant.patient_id().to_string())
        .detail(serde_json::json!({ "via": via, "statements": ids }))
}

/// The grant over the patient a statement, payment or coverage belongs to; NOT_FOUND
/// (audited) when there is none or the viewer may not see that patient.
async fn grant_via(
    state: &AppState,
    viewer: &Viewer,
    patient: Option<Uuid>,
    resource: (&'static str, Uuid),
    what: BillingAction,
    action: &'static str,
) -> AppResult<BillingGrant> {
    match patient {
        Some(p) => billing_grant(state, viewer, p, what, action).await,
        None => {
            crate::access::refuse(
                state,
                viewer,
                action,
                resource.0,
                resource.1.to_string(),
                None,
                AppError::NotFound,
            )
            .await
        }
    }
}

/// `Patient.coverages`: under the patient's billing grant.
pub async fn coverages_of(ctx: &Context<'_>, patient_id: Uuid) -> AppResult<Vec<Coverage>> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let grant = billing_grant(
        state,
        viewer,
        patient_id,
        BillingAction::Read,
        "coverage.read",
    )
    .await?;
    let list = service::coverages_of(&state.db, &state.keys, &grant).await?;
    audit_read(
        ctx,
        AuditEvent::by(viewer, "coverage.read", "patient")
            .scope(&grant)
            .resource(patient_id.to_string())
            .detail(serde_json::json!({
                "coverages": list.iter().map(|c| c.row.id.to_string()).collect::<Vec<_>>(),
            })),
    )
    .await?;
    Ok(list.into_iter().map(Coverage).collect())
}

#[derive(Default)]
pub struct BillingQuery;

#[Object]
impl BillingQuery {
    /// A patient's statements, newest first.
    #[graphql(
        complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
    )]
    async fn billing_statements(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        status: Option<StatementStatus>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<Connection<BillingStatement>> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let patient_id = parse_id("patientId", &patient_id)?;
        let first = relay::page_size(first)?;
        let after = after.as_deref().map(position).transpose()?;
        let grant = billing_grant(
            state,
            viewer,
            patient_id,
            BillingAction::Read,
            "billing.read",
        )
        .await?;
        let (list, more) = service::page(
            &state.db,
            &state.keys,
            &grant,
            status.map(StatementStatus::as_str),
            first,
            after,
        )
        .await?;
        let ids = list.iter().map(|s| s.row.id.to_string()).collect();
        audit_reads(
            ctx,
            vec![read_event(viewer, &grant, ids, "billingStatements")],
        )
        .await?;
        let grant = Arc::new(grant);
        let edges: Vec<Edge<BillingStatement>> = list
            .into_iter()
            .map(|st| Edge {
                cursor: cursor(&st),
                node: BillingStatement {
                    st,
                    grant: grant.clone(),
                },
            })
            .collect();
        Ok(Connection {
            page_info: PageInfo::new(edges.iter().map(|e| &e.cursor), more, after.is_some()),
            total_count: edges.len() as u64,
            edges,
        })
    }

    /// One statement. NOT_FOUND both when it does not exist and when you may not see it.
    async fn statement(&self, ctx: &Context<'_>, id: ID) -> Result<BillingStatement> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("id", &id)?;
        let patient = service::patient_of_statement(&state.db, id).await?;
        let grant = grant_via(
            state,
            viewer,
            patient,
            ("billing_statement", id),
            BillingAction::Read,
            "billing.read",
        )
        .await?;
        let st = service::one(&state.db, &state.keys, &grant, id).await?;
        audit_read(
            ctx,
            read_event(viewer, &grant, vec![id.to_string()], "statement"),
        )
        .await?;
        Ok(BillingStatement {
            st,
            grant: Arc::new(grant),
        })
    }
}

/// One line of a new statement.
#[derive(InputObject)]
pub struct LineItemInput {
    pub service_date: NaiveDate,
    pub description: String,
    pub code: String,
    pub amount_cents: i64,
}

/// A statement to issue.
#[derive(InputObject)]
pub struct IssueStatementInput {
    /// Defaults to today.
    pub issued_on: Option<NaiveDate>,
    pub due_on: NaiveDate,
    #[graphql(default = "USD")]
    pub currency: String,
    pub line_items: Vec<LineItemInput>,
}

impl IssueStatementInput {
    fn parse(self) -> AppResult<service::NewStatement> {
        let issued_on = self.issued_on.unwrap_or_else(|| Utc::now().date_naive());
        if self.due_on < issued_on {
            return Err(AppError::validation("dueOn", "is before the issue date"));
        }
        let currency = self.currency.trim().to_ascii_uppercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(AppError::validation("currency", "must be an ISO 4217 code"));
        }
        if self.line_items.is_empty() || self.line_items.len() > 100 {
            return Err(AppError::validation(
                "lineItems",
                "must hold 1 to 100 lines",
            ));
        }
        let mut lines = Vec::with_capacity(self.line_items.len());
        for l in self.line_items {
            if l.amount_cents <= 0 || l.amount_cents > 100_000_000 {
                return Err(AppError::validation(
                    "lineItems",
                    "amounts must be positive and at most 1,000,000.00",
                ));
            }
            let code = bounded_text("code", &l.code, 16)?;
            if !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(AppError::validation("code", "must be letters and digits"));
            }
            lines.push(service::LineItem {
                service_date: l.service_date,
                description: bounded_text("description", &l.description, 200)?,
                code,
                amount_cents: l.amount_cents,
            });
        }
        Ok(service::NewStatement {
            issued_on,
            due_on: self.due_on,
            currency,
            lines,
        })
    }
}

/// A coverage to add.
#[derive(InputObject)]
pub struct CoverageInput {
    pub payer: String,
    pub plan_name: String,
    pub member_id: String,
    pub group_number: Option<String>,
    pub subscriber_relationship: SubscriberRelationship,
    pub effective_from: NaiveDate,
    pub effective_to: Option<NaiveDate>,
}

#[derive(Default)]
pub struct BillingMutation;

#[Object]
impl BillingMutation {
    /// Pay (part of) a statement. `idempotencyKey` makes retries safe: the same key and
    /// request return the first result without charging again; the same key with another
    /// request, or while the first is still in progress, is CONFLICT. More than the balance
    /// (counting payments in progress), or a non-positive amount, is VALIDATION.
    async fn make_payment(
        &self,
        ctx: &Context<'_>,
        statement_id: ID,
        amount_cents: i64,
        payment_method_token: String,
        idempotency_key: String,
    ) -> Result<Payment> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let statement_id = parse_id("statementId", &statement_id)?;
        let key = bounded_text("idempotencyKey", &idempotency_key, service::KEY_MAX)?;
        let token = bounded_text(
            "paymentMethodToken",
            &payment_method_token,
            service::KEY_MAX,
        )?;
        let patient = service::patient_of_statement(&state.db, statement_id).await?;
        let grant = grant_via(
            state,
            viewer,
            patient,
            ("billing_statement", statement_id),
            BillingAction::Act,
            "payment.create",
        )
        .await?;
        let req = PaymentRequest {
            statement_id,
            amount_cents,
            token: &token,
            key: &key,
        };
        let mut tx = WriteTxn::begin(&state.db).await?;
        let (attempt, new) = service::attempt(&mut tx, &state.keys, viewer, &grant, &req).await?;
        tx.commit().await?;
        if !new {
            return Ok(Payment(attempt));
        }
        let gw = gateways(state)?;
        let p = service::charge(
            &state.db,
            &state.keys,
            gw.payments.as_ref(),
            viewer,
            attempt,
        )
        .await?;
        Ok(Payment(p))
    }

    /// ADMIN: issue a statement to a patient (its total goes into the ledger as a CHARGE).
    async fn issue_statement(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        input: IssueStatementInput,
    ) -> Result<BillingStatement> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let patient_id = parse_id("patientId", &patient_id)?;
        let new = input.parse()?;
        let grant = billing_grant(
            state,
            viewer,
            patient_id,
            BillingAction::Administer,
            "statement.issue",
        )
        .await?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        let st = service::issue(&mut tx, &state.keys, viewer, &grant, new).await?;
        tx.commit().await?;
        Ok(BillingStatement {
            st,
            grant: Arc::new(grant),
        })
    }

    /// ADMIN: void an OPEN statement without payments.
    async fn void_statement(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> Result<BillingStatement> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("id", &id)?;
        let reason = parse_reason(&reason)?;
        let patient = service::patient_of_statement(&state.db, id).await?;
        let grant = grant_via(
            state,
            viewer,
            patient,
            ("billing_statement", id),
            BillingAction::Administer,
            "statement.void",
        )
        .await?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        let st = service::void(&mut tx, &state.keys, viewer, &grant, id, &reason).await?;
        tx.commit().await?;
        Ok(BillingStatement {
            st,
            grant: Arc::new(grant),
        })
    }

    /// ADMIN: refund (part of) a SUCCEEDED payment.
    async fn refund_payment(
        &self,
        ctx: &Context<'_>,
        payment_id: ID,
        amount_cents: i64,
        reason: String,
    ) -> Result<Payment> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("paymentId", &payment_id)?;
        let reason = parse_reason(&reason)?;
        let patient = service::patient_of_payment(&state.db, id).await?;
        let grant = grant_via(
            state,
            viewer,
            patient,
            ("payment", id),
            BillingAction::Administer,
            "payment.refund",
        )
        .await?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        let p = service::refund(
            &mut tx,
            viewer,
            &grant,
            &state.keys,
            id,
            amount_cents,
            &reason,
        )
        .await?;
        tx.commit().await?;
        Ok(Payment(p))
    }

    /// Add an insurance coverage (the patient or ADMIN).
    async fn add_coverage(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        input: CoverageInput,
    ) -> Result<Coverage> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let patient_id = parse_id("patientId", &patient_id)?;
        if input.effective_to.is_some_and(|t| t < input.effective_from) {
            return Err(AppError::validation("effectiveTo", "is before effectiveFrom").into());
        }
        let new = service::NewCoverage {
            payer: bounded_text("payer", &input.payer, 100)?,
            plan_name: bounded_text("planName", &input.plan_name, 100)?,
            member_id: bounded_text("memberId", &input.member_id, 64)?,
            group_number: input
                .group_number
                .as_deref()
                .map(|g| bounded_text("groupNumber", g, 64))
                .transpose()?,
            relationship: input.subscriber_relationship.as_str(),
            effective_from: input.effective_from,
            effective_to: input.effective_to,
        };
        let grant = billing_grant(
            state,
            viewer,
            patient_id,
            BillingAction::Act,
            "coverage.create",
        )
        .await?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        let c = service::add_coverage(&mut tx, &state.keys, viewer, &grant, new).await?;
        tx.commit().await?;
        Ok(Coverage(c))
    }

    /// Ask the payer whether a coverage is in force today.
    async fn verify_coverage(
        &self,
        ctx: &Context<'_>,
        coverage_id: ID,
    ) -> Result<CoverageEligibility> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("coverageId", &coverage_id)?;
        let patient = service::patient_of_coverage(&state.db, id).await?;
        let grant = grant_via(
            state,
            viewer,
            patient,
            ("coverage", id),
            BillingAction::Act,
            "coverage.verify",
        )
        .await?;
        let c = service::coverage(&state.db, &state.keys, &grant, id).await?;
        let now = Utc::now();
        let e = gateways(state)?
            .payer
            .eligibility(
                &c.row.payer,
                &c.row.plan_name,
                &c.member_id,
                now.date_naive(),
                (c.row.effective_from, c.row.effective_to),
            )
            .await?;
        let status = EligibilityStatus::parse(e.status).unwrap_or(EligibilityStatus::Unknown);
        state
            .audit
            .record(
                AuditEvent::by(viewer, "coverage.verify", "coverage")
                    .scope(&grant)
                    .resource(id.to_string())
                    .detail(serde_json::json!({ "status": status.as_str() })),
            )
            .await?;
        Ok(CoverageEligibility {
            status,
            checked_at: now,
            plan_name: e.plan_name,
            copay_cents: e.copay_cents,
        })
    }
}
